"""Host-side acting adaptors: one `Policy` interface for MLP learners, the DT and random play.

A `Policy` acts on `n` episodes at once; observations are `(n, obs_dim)` numpy arrays and
actions `(n, act_dim)` float32 numpy arrays in [-1, 1]:

    policy.reset(n)                       # n fresh episodes
    action = policy.act(obs)              # (n, obs_dim) -> (n, act_dim)
    policy.observe(action, reward, cost)  # the action actually executed, (n,) reward and cost
    policy.restart(done)                  # new episodes in the rows where `done` (autoreset)

Stateless policies ignore `observe`; the Decision Transformer records the executed action in
its context and lowers its return-to-go. `load_guide(directory)` rebuilds a guide policy from a
checkpoint written by `gold_jax.stages.train_guide`; `load_policy(path)` rebuilds any saved
policy (guide, student or expert) and `restore_learner(path)` any learner state.
"""

import dataclasses
import functools
import importlib
import os
from typing import Any, Dict, Optional, Protocol, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from gold_jax.agents import common, dt
from gold_jax.errors import CheckpointError


class Policy(Protocol):
  """What the loop, the evaluation and `JSRLPolicy` need from a policy."""

  def reset(self, n: int) -> None:
    """Starts `n` fresh episodes."""

  def act(self, obs: np.ndarray) -> np.ndarray:
    """Actions `(n, act_dim)` for observations `(n, obs_dim)`."""

  def observe(self, action: np.ndarray, reward: np.ndarray, cost: np.ndarray) -> None:
    """Records the executed step of every episode."""

  def restart(self, done: np.ndarray) -> None:
    """Starts new episodes in the rows where `done` is true."""


# XLA options for programs that run once: compile fast, skip optimisation.
_RUN_ONCE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


@functools.lru_cache(maxsize=None)
def _compiled_init(module, obs_dim: int, act_dim: int, config):
  init = jax.jit(module.init, static_argnums=(1, 2, 3))
  return init.lower(jax.random.PRNGKey(0), obs_dim, act_dim, config).compile(_RUN_ONCE)


def init_state(module, key, obs_dim: int, act_dim: int, config):
  """`module.init(key, obs_dim, act_dim, config)` as one unoptimised compiled program.

  Initialisation runs once per run, so only its compile time counts: eager flax init compiles
  every initializer op apart and an optimising compile of the whole init is slow on CPU
  (orthogonal initializers). The values are those of `module.init` up to float rounding
  (about 1e-6), and the same on every call.
  """
  return _compiled_init(module, int(obs_dim), int(act_dim), config)(key)


def uncommitted(tree):
  """Copies of (restored) arrays that are not committed to a device, like freshly made ones.

  Jitted functions compile one version per input placement: without this, acting and updating
  with a state read from a checkpoint would compile a second version of each function.
  """
  def copy(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(copy(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    return jnp.asarray(np.asarray(x))

  return jax.tree.map(copy, tree)


@functools.lru_cache(maxsize=None)
def _split_and_act(module, deterministic: bool):
  """`(state, obs, key) -> (action, next_key)` in one dispatch, compiled once per module."""

  def split_and_act(state, obs, key):
    key, subkey = jax.random.split(key)
    return module.act(state, obs, subkey, deterministic=deterministic), key

  return jax.jit(split_and_act)


class MLPPolicy:
  """Acts with `module.act(state, obs, key, deterministic)` of an MLP learner (IQL, CVPO, BC, SAC).

  One jitted call per step splits the policy's key and acts (stochastic policies draw a fresh
  subkey each step). `state` is public: the training loop replaces it after each update (the
  old state is donated to the update and must not be used again). `key` is the raw uint32
  key carried between steps.
  """

  def __init__(self, module, state, deterministic: bool = True, seed: int = 0):
    self.module, self.deterministic = module, deterministic
    self.state = state
    self.key = jax.random.PRNGKey(seed)
    self._act = _split_and_act(module, deterministic)

  @property
  def state(self):
    return self._state

  @state.setter
  def state(self, state) -> None:
    # Acting dispatches only the fields the actor reads (`common.acting_view`).
    self._state = state
    self._view = common.acting_view(state, *self.module.ACTING_FIELDS)

  def reset(self, n: int) -> None:
    del n

  def act(self, obs: np.ndarray) -> np.ndarray:
    action, self.key = self._act(self._view, np.asarray(obs, np.float32), self.key)
    return np.asarray(action, np.float32)

  def observe(self, action, reward, cost) -> None:
    del action, reward, cost

  def restart(self, done) -> None:
    del done

  def __reduce__(self):
    # Pickles as the actor's parameters and settings (for `gold_jax.remote.PolicyServer`).
    return (_rebuild_mlp_policy, (self.module.__name__, jax.device_get(self._view),
                                  self.deterministic, jax.device_get(self.key)))


def _rebuild_mlp_policy(module_name: str, view, deterministic: bool, key) -> MLPPolicy:
  policy = MLPPolicy(importlib.import_module(module_name), uncommitted(view), deterministic)
  policy.key = jnp.asarray(key)
  return policy


class DTPolicy:
  """Acts with the Decision Transformer's fixed-shape rolling context (`gold_jax.agents.dt`).

  Every executed step is recorded with `observe`, whichever policy chose it, so the context
  (and the return-to-go it conditions on) follows the real trajectory. `restart` puts a fresh
  context into the rows of finished episodes.
  """

  def __init__(self, state, target_return: float, target_cost: float = 0.0):
    self.dt, self.state = dt, state
    self.target_return, self.target_cost = float(target_return), float(target_cost)
    self.ctx = None

  def reset(self, n: int) -> None:
    self.ctx = self.dt.init_context(self.state, self.target_return, n, self.target_cost)

  def act(self, obs: np.ndarray) -> np.ndarray:
    action, self.ctx = self.dt.act_context(self.state, self.ctx, np.asarray(obs, np.float32))
    return np.asarray(action, np.float32)

  def observe(self, action, reward, cost) -> None:
    self.ctx = self.dt.observe(self.ctx, np.asarray(action, np.float32),
                               np.asarray(reward, np.float32), np.asarray(cost, np.float32))

  def restart(self, done) -> None:
    done = np.asarray(done, bool)
    if done.any():
      self.ctx = self.dt.reset_context(self.state, self.ctx, done, self.target_return,
                                       self.target_cost)

  def __reduce__(self):
    # Pickles as the acting parameters and targets, without episodes (`reset` starts them).
    view = common.acting_view(self.state, 'params', 'obs_mean', 'obs_std')
    return (_rebuild_dt_policy, (jax.device_get(view), self.target_return, self.target_cost))


def _rebuild_dt_policy(view, target_return: float, target_cost: float) -> 'DTPolicy':
  return DTPolicy(uncommitted(view), target_return, target_cost)


class RandomPolicy:
  """Uniform actions in [-1, 1]^act_dim from a seeded numpy generator."""

  def __init__(self, act_dim: int, seed: int = 0):
    self.act_dim, self.rng = act_dim, np.random.default_rng(seed)

  def reset(self, n: int) -> None:
    del n

  def act(self, obs: np.ndarray) -> np.ndarray:
    return self.rng.uniform(-1.0, 1.0, (obs.shape[0], self.act_dim)).astype(np.float32)

  def observe(self, action, reward, cost) -> None:
    del action, reward, cost

  def restart(self, done) -> None:
    del done


# -- Guide checkpoints --------------------------------------------------------------------

GUIDE_ALGOS = ('dt', 'bc')


def config_from_dict(cls, values: Dict[str, Any], default=None):
  """A (possibly nested) frozen config from its JSON form; JSON lists become tuples."""
  default = cls() if default is None else default
  unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
  if unknown:
    raise CheckpointError(f'checkpoint config has fields {unknown} unknown to '
                          f'{cls.__module__}.{cls.__qualname__}; was it written by another '
                          'version of gold-jax? (λ settings such as lambda_rule and cost_coef '
                          'moved into the nested `multiplier` config)')
  kwargs = {}
  for name, value in values.items():
    current = getattr(default, name)
    if dataclasses.is_dataclass(current) and isinstance(value, dict):
      value = config_from_dict(type(current), value, current)
    elif isinstance(value, list):
      value = tuple(value)
    kwargs[name] = value
  return cls(**kwargs)


def read_guide_metadata(directory: str) -> Dict[str, Any]:
  """The metadata of the latest guide checkpoint in `directory` (see `load_guide`)."""
  from gold_jax import checkpoints  # pylint: disable=g-import-not-at-top
  directory = checkpoints.checkpoint_dir(directory)
  with checkpoints.CheckpointManager(directory, max_to_keep=None) as manager:
    metadata = manager.read_metadata()
  guide = dict(metadata.get('extra', {}))
  guide.setdefault('config', metadata.get('config'))
  missing = [k for k in ('algo', 'task', 'obs_dim', 'act_dim', 'config') if guide.get(k) is None]
  if missing:
    raise CheckpointError(f'{directory}: not a guide checkpoint, metadata lacks {missing}')
  if guide['algo'] not in GUIDE_ALGOS:
    raise CheckpointError(f'{directory}: guide algo must be one of {GUIDE_ALGOS}, got '
                          f'{guide["algo"]!r}')
  if guide['algo'] == 'dt' and guide.get('target_return') is None:
    raise CheckpointError(f'{directory}: a Decision Transformer guide needs "target_return"')
  return guide


def load_guide(directory: str, target_return: Optional[float] = None) -> Policy:
  """Rebuilds the guide policy saved in `directory` by `gold_jax.stages.train_guide`.

  `directory` is a train_guide run directory or its `checkpoints/` folder: a
  `gold_jax.checkpoints.CheckpointManager` directory whose latest step holds the
  guide's learner state (`gold_jax.agents.dt.State` or `gold_jax.agents.bc.State`, including
  its observation normaliser) saved as `manager.save(step, state, extra=metadata)` with

    metadata = {
        'algo': 'dt' | 'bc',
        'task': task name the guide was trained on (e.g. 'Car-Circle'),
        'obs_dim': int, 'act_dim': int,
        'target_return': float,  # DT only: the return-to-go it is conditioned on at t = 0
        'target_cost': float,    # DT only, optional (default 0): the cost-to-go at t = 0
    }

  The learner config is the `config` the manager stores beside every checkpoint. A DT guide
  becomes a `DTPolicy` (`target_return` overrides the saved one), a BC guide an `MLPPolicy`.
  """
  from gold_jax.agents import bc  # pylint: disable=g-import-not-at-top
  from gold_jax import checkpoints  # pylint: disable=g-import-not-at-top
  directory = checkpoints.checkpoint_dir(directory)
  guide = read_guide_metadata(directory)
  module = dt if guide['algo'] == 'dt' else bc
  config = config_from_dict(module.Config, guide['config'])
  template = init_state(module, jax.random.PRNGKey(0), guide['obs_dim'], guide['act_dim'],
                        config)
  with checkpoints.CheckpointManager(directory, max_to_keep=None) as manager:
    state = uncommitted(manager.restore(template))
  if guide['algo'] == 'bc':
    return MLPPolicy(bc, state, deterministic=True)
  target = guide['target_return'] if target_return is None else target_return
  return DTPolicy(state, target, guide.get('target_cost', 0.0))


# -- Any learner checkpoint ------------------------------------------------------------------


def restore_learner(path: str) -> Tuple[Any, Any, Dict[str, Any]]:
  """`(learner module, state, metadata)` of the latest checkpoint in `path` (any learner).

  The learner is the module of the saved config class (`gold_jax.agents.<name>`); the
  template is built with the saved config and sizes, so no flag has to repeat them.
  """
  from gold_jax import checkpoints  # pylint: disable=g-import-not-at-top
  directory = checkpoints.checkpoint_dir(path)
  with checkpoints.CheckpointManager(directory, max_to_keep=None) as manager:
    metadata = manager.read_metadata()
    config_class = metadata.get('config_class', '')
    module_name, _, class_name = config_class.rpartition('.')
    if not module_name.startswith('gold_jax.agents.'):
      raise CheckpointError(f'{directory}: not a gold-jax learner checkpoint (config class '
                            f'{config_class!r})')
    module = importlib.import_module(module_name)
    config = config_from_dict(getattr(module, class_name), metadata['config'])
    extra = metadata.get('extra', {})
    obs_dim = metadata.get('obs_dim', extra.get('obs_dim'))
    act_dim = metadata.get('act_dim', extra.get('act_dim'))
    if obs_dim is None or act_dim is None:
      raise CheckpointError(f'{directory}: checkpoint records no obs_dim/act_dim')
    template = init_state(module, jax.random.PRNGKey(0), obs_dim, act_dim, config)
    state = uncommitted(manager.restore(template))
  metadata = dict(metadata, obs_dim=int(obs_dim), act_dim=int(act_dim),
                  learner=module_name.rsplit('.', 1)[-1])
  return module, state, metadata


def recorded_task(path: str, metadata: Dict[str, Any]) -> str:
  """The task saved with a checkpoint, or in its run's config.json; '' when unknown."""
  from gold_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from gold_jax.files import read_json  # pylint: disable=g-import-not-at-top
  task = metadata.get('extra', {}).get('task') or metadata.get('task')
  if task:
    return task
  directory = checkpoints.checkpoint_dir(path)
  for run_dir in (os.path.dirname(directory), directory):
    config = read_json(os.path.join(run_dir, 'config.json'))
    if config and config.get('task'):
      return config['task']
  return ''


def load_policy(path: str, target_return: Optional[float] = None):
  """`(policy, info)` for any checkpoint: a guide through `load_guide`, else an MLP learner.

  `info` holds `kind` ('guide' or 'learner'), `algo`, `task` ('' if unknown), `obs_dim`,
  `act_dim`, and for MLP learners `module` and `state`.
  """
  from gold_jax import checkpoints  # pylint: disable=g-import-not-at-top
  directory = checkpoints.checkpoint_dir(path)
  try:
    guide = read_guide_metadata(directory)
  except CheckpointError:
    guide = None
  if guide is not None:
    policy = load_guide(directory, target_return)
    info = {'kind': 'guide', 'algo': guide['algo'], 'task': guide['task'],
            'obs_dim': int(guide['obs_dim']), 'act_dim': int(guide['act_dim'])}
    if guide['algo'] == 'bc':
      info.update(module=policy.module, state=policy.state)
    return policy, info
  module, state, metadata = restore_learner(directory)
  info = {'kind': 'learner', 'algo': metadata['learner'], 'task': recorded_task(path, metadata),
          'obs_dim': metadata['obs_dim'], 'act_dim': metadata['act_dim'], 'module': module,
          'state': state}
  return MLPPolicy(module, state, deterministic=True), info
