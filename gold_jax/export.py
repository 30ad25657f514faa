"""Deployment artifact of a distilled student: its MLP actor as a small `.npz` and numpy inference.

    export_actor(state, 'student.npz', metadata={'task': 'Car-Circle'})
    policy = NumpyPolicy.load('student.npz')
    action = policy(obs)            # (obs_dim,) or (n, obs_dim) -> actions in [-1, 1]

The file holds the dense layers `w{i}`, `b{i}` (hidden layers with ReLU, then the mean head),
the observation normaliser, and JSON metadata. The action is the learner's deterministic one,
clip(tanh(mean head), -1, 1), for every MLP learner of gold-jax (IQL with either actor loss,
CVPO, SAC and BC all act with the tanh of the Gaussian mean or of the deterministic head).
`NumpyPolicy` needs nothing but numpy; JAX is imported only to read checkpoints and, on request,
to write a `jax.export` serialisation of the same function.
"""

import dataclasses
import importlib.util
import json
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from gold_jax.files import atomic_open

FORMAT = 'gold-jax-mlp-actor-v1'


def _dense(params) -> Tuple[np.ndarray, np.ndarray]:
  return (np.asarray(params['kernel'], np.float32), np.asarray(params['bias'], np.float32))


def actor_layers(params) -> List[Tuple[np.ndarray, np.ndarray]]:
  """Dense layers of a `GaussianPolicy` / `DeterministicPolicy` param tree, trunk then head.

  Both modules hold their trunk in `MLP_0` (`Dense_0`, `Dense_1`, ... with ReLU between and
  after) and the action (mean) head in their own `Dense_0`; a Gaussian's std head is not needed.
  """
  if 'params' in params and 'MLP_0' not in params:
    params = params['params']
  if 'MLP_0' not in params or 'Dense_0' not in params:
    raise ValueError(f'not an MLP actor: expected MLP_0 and Dense_0, got {sorted(params)}')
  trunk = params['MLP_0']
  layers = [_dense(trunk[f'Dense_{i}']) for i in range(len(trunk))]
  return layers + [_dense(params['Dense_0'])]


def actor_of(state) -> Tuple[Any, Optional[np.ndarray], Optional[np.ndarray], str]:
  """`(actor params, obs_mean, obs_std, learner name)` of a learner state of gold-jax."""
  learner = type(state).__module__.rsplit('.', 1)[-1]
  if hasattr(state, 'actor_params'):  # IQL, SAC.
    return state.actor_params, None, None, learner
  if hasattr(state, 'policy_params'):  # CVPO.
    return state.policy_params, None, None, learner
  if hasattr(state, 'params') and hasattr(state, 'obs_mean'):
    if 'MLP_0' not in state.params:
      raise ValueError(f'{type(state).__module__}: not an MLP actor (a sequence model cannot '
                       'be exported as an MLP)')
    return state.params, np.asarray(state.obs_mean), np.asarray(state.obs_std), learner
  raise ValueError(f'cannot find the actor of a {type(state).__module__}.{type(state).__name__}')


def _atomic_savez(path: str, arrays: Dict[str, np.ndarray]) -> None:
  with atomic_open(path, 'wb') as f:
    np.savez(f, **arrays)


def export_actor(state, path: str, metadata: Optional[Dict[str, Any]] = None) -> str:
  """Writes the deterministic actor of `state` (IQL, CVPO, SAC or BC) to `path` (.npz)."""
  params, obs_mean, obs_std, learner = actor_of(state)
  layers = actor_layers(params)
  obs_dim, act_dim = layers[0][0].shape[0], layers[-1][0].shape[1]
  if obs_mean is None:
    obs_mean, obs_std = np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32)
  meta = {'format': FORMAT, 'learner': learner, 'obs_dim': int(obs_dim),
          'act_dim': int(act_dim), 'hidden_dims': [int(w.shape[1]) for w, _ in layers[:-1]],
          'activation': 'relu', 'output': 'tanh', **(metadata or {})}
  arrays = {'obs_mean': np.asarray(obs_mean, np.float32),
            'obs_std': np.asarray(obs_std, np.float32),
            'metadata': np.array(json.dumps(meta))}
  for i, (w, b) in enumerate(layers):
    arrays[f'w{i}'], arrays[f'b{i}'] = w, b
  _atomic_savez(path, arrays)
  return path


@dataclasses.dataclass(frozen=True)
class NumpyPolicy:
  """The exported actor: `policy(obs) -> action` with numpy only (float32)."""
  weights: Tuple[np.ndarray, ...]
  biases: Tuple[np.ndarray, ...]
  obs_mean: np.ndarray
  obs_std: np.ndarray
  metadata: Dict[str, Any]

  @classmethod
  def load(cls, path: str) -> 'NumpyPolicy':
    with np.load(path, allow_pickle=False) as f:
      meta = json.loads(str(f['metadata'][()]))
      if meta.get('format') != FORMAT:
        raise ValueError(f'{path}: not a gold-jax actor export (format {meta.get("format")!r})')
      count = len(meta['hidden_dims']) + 1
      weights = tuple(f[f'w{i}'] for i in range(count))
      biases = tuple(f[f'b{i}'] for i in range(count))
      return cls(weights, biases, f['obs_mean'], f['obs_std'], meta)

  @property
  def obs_dim(self) -> int:
    return self.weights[0].shape[0]

  @property
  def act_dim(self) -> int:
    return self.weights[-1].shape[1]

  def __call__(self, obs) -> np.ndarray:
    x = np.asarray(obs, np.float32)
    if x.shape[-1] != self.obs_dim or x.ndim not in (1, 2):
      raise ValueError(f'obs: expected shape ({self.obs_dim},) or (n, {self.obs_dim}), '
                       f'got {x.shape}')
    x = (x - self.obs_mean) / self.obs_std
    for w, b in zip(self.weights[:-1], self.biases[:-1]):
      x = np.maximum(x @ w + b, 0.0)
    return np.clip(np.tanh(x @ self.weights[-1] + self.biases[-1]), -1.0, 1.0)

  def num_params(self) -> int:
    return int(sum(w.size + b.size for w, b in zip(self.weights, self.biases)))


def jax_actor(policy: NumpyPolicy) -> Callable:
  """The same function in jax.numpy (parameters closed over as constants)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  weights = [jnp.asarray(w) for w in policy.weights]
  biases = [jnp.asarray(b) for b in policy.biases]
  mean, std = jnp.asarray(policy.obs_mean), jnp.asarray(policy.obs_std)

  def actor(obs):
    x = (obs - mean) / std
    for w, b in zip(weights[:-1], biases[:-1]):
      x = jnp.maximum(x @ w + b, 0.0)
    return jnp.clip(jnp.tanh(x @ weights[-1] + biases[-1]), -1.0, 1.0)

  return actor


def export_jax(policy: NumpyPolicy, path: str, batch: int = 1) -> str:
  """Writes a `jax.export` serialisation of the actor for `(batch, obs_dim)` inputs."""
  import jax  # pylint: disable=g-import-not-at-top
  if importlib.util.find_spec('flatbuffers') is None:
    raise ImportError('jax.export serialisation needs the flatbuffers package '
                      '(pip install flatbuffers)')
  exported = jax.export.export(jax.jit(jax_actor(policy)))(
      jax.ShapeDtypeStruct((batch, policy.obs_dim), np.float32))
  data = exported.serialize()
  with atomic_open(path, 'wb') as f:
    f.write(data)
  return path


def load_jax_export(path: str) -> Callable:
  """`obs (batch, obs_dim) -> actions` from a file written by `export_jax`."""
  import jax  # pylint: disable=g-import-not-at-top
  with open(path, 'rb') as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  return exported.call


def latency(fn: Callable[[], Any], repeats: int = 200, warmup: int = 10) -> float:
  """Median wall-clock seconds of one call of `fn` (after `warmup` calls)."""
  for _ in range(warmup):
    fn()
  times = np.empty(repeats)
  for i in range(repeats):
    start = time.perf_counter()
    fn()
    times[i] = time.perf_counter() - start
  return float(np.median(times))
