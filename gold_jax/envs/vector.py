"""`n` copies of a task stepped together: `make_vec` and `SafeVecEnv`.

The API is that of `SafeEnv` with a leading axis `n`:
`reset(seed=None) -> (obs (n, obs_dim), info)` and
`step(actions (n, act_dim)) -> (obs, reward (n,), cost (n,), terminated (n,), truncated (n,),
info)` with float32 `obs`, float64 `reward` and `cost`, bool flags.

Autoreset follows gymnasium 0.28: when copy `i` ends an episode in `step`, it is reset at once
and `obs[i]` is the first observation of the next episode; the last observation of the ended
episode is `info["final_observation"][i]` and that step's own info (for instance `success`) is
`info["final_info"][i]`. Both are object arrays of length `n` holding `None` where no episode
ended, with boolean masks `info["_final_observation"]` and `info["_final_info"]`. Every other
info key `k` becomes an array of length `n` (object dtype when the values are not scalars)
with the mask `info["_k"]` marking the copies that reported it.

Copy `i` is built with seed `seed + i`. With `asynchronous=True` each copy runs in its own
process (spawned, so it is safe next to JAX); MetaDrive allows one simulator per process, so
its vectorised form needs `asynchronous=True` when `n > 1`.

`split(parts)` gives views of consecutive groups of copies that step apart (the training loop
pipelines them: one group's actions are computed while the other group's simulators step).
"""

import copy
import multiprocessing
from typing import Any, Dict, List, Optional, Sequence, Tuple

import gymnasium
import numpy as np

from gold_jax.envs import registry
from gold_jax.envs.core import SafeEnv


def step_autoreset(env: SafeEnv, action) -> Tuple:
  """One step of `env`; resets it when the episode ends. Returns the step plus the final
  `(obs, info)` of the ended episode, or `None`."""
  obs, reward, cost, terminated, truncated, info = env.step(action)
  final = None
  if terminated or truncated:
    final = (obs, info)
    obs, info = env.reset()
  return obs, reward, cost, terminated, truncated, info, final


def _worker(conn, task: str, seed: int, options: Dict[str, Any]) -> None:
  """Serves one env in a child process: commands ('reset', kwargs), ('step', action), ('close',)."""
  env = None
  try:
    env = registry.make(task, seed=seed, **options)
    conn.send(('ok', (env.spec, env.observation_space, env.action_space)))
    while True:
      command, arg = conn.recv()
      if command == 'close':
        break
      try:
        result = env.reset(**arg) if command == 'reset' else step_autoreset(env, arg)
        conn.send(('ok', result))
      except Exception as e:  # pylint: disable=broad-except
        conn.send(('error', e))
  except Exception as e:  # pylint: disable=broad-except
    conn.send(('error', e))
  finally:
    if env is not None:
      env.close()
    conn.close()


class _Remote:
  """Client side of a `_worker` process."""

  def __init__(self, context, task: str, seed: int, options: Dict[str, Any]):
    self.conn, child = context.Pipe()
    self.process = context.Process(target=_worker, args=(child, task, seed, options), daemon=True)
    self.process.start()
    child.close()

  def send(self, command: str, arg=None) -> None:
    self.conn.send((command, arg))

  def receive(self) -> Tuple[str, Any]:
    return self.conn.recv()

  def close(self) -> None:
    try:
      self.conn.send(('close', None))
    except (BrokenPipeError, OSError):
      pass
    self.process.join(timeout=10)
    if self.process.is_alive():
      self.process.terminate()
    self.conn.close()


def _gather(remotes: Sequence[_Remote]) -> List[Any]:
  """Reads one answer from every worker, then raises the first error among them, if any."""
  answers = [remote.receive() for remote in remotes]
  for status, value in answers:
    if status == 'error':
      raise value
  return [value for _, value in answers]


def _merge_infos(infos: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  """Per-copy info dicts -> dict of length-n arrays plus `_key` masks."""
  n = len(infos)
  merged = {}
  for key in dict.fromkeys(k for info in infos for k in info):
    present = np.array([key in info for info in infos])
    values = [info.get(key) for info in infos]
    if all(np.isscalar(v) for v, p in zip(values, present) if p):
      fill = next(v for v, p in zip(values, present) if p)
      array = np.array([v if p else type(fill)() for v, p in zip(values, present)])
    else:
      array = np.empty(n, dtype=object)
      for i, value in enumerate(values):
        array[i] = value
    merged[key] = array
    merged['_' + key] = present
  return merged


class SafeVecEnv:
  """`n` copies of one task; see the module docstring.

  Attributes:
    spec, obs_dim, act_dim: as for `SafeEnv`.
    num_envs: `n`.
    single_observation_space, single_action_space: the spaces of one copy.
    observation_space, action_space: batched `(n, ...)` boxes.
  """

  def __init__(self, task: str, n: int, seed: int = 0, asynchronous: bool = False, **options):
    if int(n) < 1:
      raise ValueError(f'n must be >= 1, got {n}')
    spec = registry.get_spec(task)
    if spec.simulator == registry.METADRIVE and n > 1 and not asynchronous:
      raise ValueError('MetaDrive runs one simulator per process: use asynchronous=True for n > 1')
    self.num_envs = n = int(n)
    self.asynchronous = bool(asynchronous)
    self._offset, self._owner = 0, True  # A view (`split`) starts at copy `_offset`.
    self._envs: List[SafeEnv] = []
    self._remotes: List[_Remote] = []
    if self.asynchronous:
      context = multiprocessing.get_context('spawn')
      self._remotes = [_Remote(context, task, seed + i, options) for i in range(n)]
      try:
        spec, obs_space, act_space = _gather(self._remotes)[0]
      except Exception:
        self.close()
        raise
    else:
      self._envs = [registry.make(task, seed=seed + i, **options) for i in range(n)]
      first = self._envs[0]
      spec, obs_space, act_space = first.spec, first.observation_space, first.action_space
    self.spec = spec
    self.single_observation_space = obs_space
    self.single_action_space = act_space
    self.obs_dim = int(obs_space.shape[0])
    self.act_dim = int(act_space.shape[0])
    self.observation_space = gymnasium.vector.utils.batch_space(obs_space, n)
    self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (n, self.act_dim), np.float32, seed=seed)

  def reset(self, seed: Optional[int] = None, options: Optional[Sequence[Optional[Dict]]] = None
            ) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Resets every copy; with `seed`, copy `i` is reseeded with `seed + i`. `options[i]` (one
    dict or None per copy) goes to copy `i`'s reset, e.g. `{'scenario_index': k}`."""
    seeds = [None if seed is None else int(seed) + self._offset + i for i in range(self.num_envs)]
    if options is None:
      options = [None] * self.num_envs
    if len(options) != self.num_envs:
      raise ValueError(f'reset options: expected one per env copy ({self.num_envs}), got '
                       f'{len(options)}')
    kwargs = [dict(seed=s) if o is None else dict(seed=s, options=o)
              for s, o in zip(seeds, options)]
    if seed is not None:
      self.action_space.seed(int(seed))
    if self._remotes:
      for remote, kw in zip(self._remotes, kwargs):
        remote.send('reset', kw)
      results = _gather(self._remotes)
    else:
      results = [env.reset(**kw) for env, kw in zip(self._envs, kwargs)]
    obs, infos = zip(*results)
    return np.stack(obs), _merge_infos(infos)

  def step(self, actions) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                   Dict[str, Any]]:
    """Steps every copy with `actions[i]` and autoresets the ones whose episode ended."""
    expected = (self.num_envs, self.act_dim)
    try:
      actions = np.asarray(actions)
    except ValueError as e:
      raise ValueError(f'actions: expected shape {expected}, got a ragged sequence') from e
    if actions.shape != expected:
      raise ValueError(f'actions: expected shape {expected}, got {actions.shape}')
    if actions.dtype.kind not in 'biuf':
      raise ValueError(f'actions: expected a numeric array, got dtype {actions.dtype}')
    bad = ~np.isfinite(actions).all(axis=1)
    if bad.any():
      i = int(np.flatnonzero(bad)[0])
      raise ValueError(f'actions[{i}]: contains NaN or inf: {actions[i]}')
    actions = np.clip(actions.astype(np.float32), -1.0, 1.0)
    if self._remotes:
      for remote, action in zip(self._remotes, actions):
        remote.send('step', action)
      results = _gather(self._remotes)
    else:
      results = [step_autoreset(env, a) for env, a in zip(self._envs, actions)]
    obs, reward, cost, terminated, truncated, infos, finals = zip(*results)
    info = _merge_infos(infos)
    ended = np.array([f is not None for f in finals])
    final_obs = np.empty(self.num_envs, dtype=object)
    final_info = np.empty(self.num_envs, dtype=object)
    for i, final in enumerate(finals):
      if final is not None:
        final_obs[i], final_info[i] = final
    info.update(final_observation=final_obs, _final_observation=ended,
                final_info=final_info, _final_info=ended)
    return (np.stack(obs), np.array(reward, dtype=np.float64), np.array(cost, dtype=np.float64),
            np.array(terminated, dtype=bool), np.array(truncated, dtype=bool), info)

  def split(self, parts: int) -> List['SafeVecEnv']:
    """`parts` views of consecutive, equal groups of copies, each a `SafeVecEnv` of its own.

    A view steps (and resets) only its copies; copy `i` keeps its seed `seed + i`. The views
    share the copies with this env: closing a view does nothing, closing this env closes all.
    """
    parts = int(parts)
    if parts < 1 or self.num_envs % parts:
      raise ValueError(f'cannot split {self.num_envs} env copies into {parts} equal groups')
    size = self.num_envs // parts
    views = []
    for k in range(parts):
      view = copy.copy(self)
      rows = slice(k * size, (k + 1) * size)
      view._envs, view._remotes = self._envs[rows], self._remotes[rows]
      view.num_envs, view._offset, view._owner = size, self._offset + k * size, False
      view.observation_space = gymnasium.vector.utils.batch_space(self.single_observation_space,
                                                                  size)
      view.action_space = gymnasium.spaces.Box(-1.0, 1.0, (size, self.act_dim), np.float32)
      views.append(view)
    return views

  def close(self) -> None:
    """Closes every copy (and ends the worker processes); a view (`split`) closes nothing."""
    if not self._owner:
      return
    for env in self._envs:
      env.close()
    for remote in self._remotes:
      remote.close()
    self._envs, self._remotes = [], []

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def make_vec(task: str, n: int, seed: int = 0, asynchronous: bool = False,
             **options) -> SafeVecEnv:
  """`n` copies of `task` with seeds `seed + i`; `options` go to every copy's `make`."""
  return SafeVecEnv(task, n, seed=seed, asynchronous=asynchronous, **options)
