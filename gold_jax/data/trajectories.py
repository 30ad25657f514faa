"""Episode datasets in the DSRL layout, stored as HDF5 or npz.

A dataset is a flat run of transitions, episodes back to back, under the keys of the DSRL
(and D4RL) HDF5 files, so files made elsewhere load here too:

  observations (N, obs_dim)  next_observations (N, obs_dim)  actions (N, act_dim)
  rewards (N,)  costs (N,)  terminals (N,)  timeouts (N,)

An episode ends after a step whose `terminals` (the next state is terminal) or `timeouts` (the
episode was cut short) flag is set. HDF5 files carry `task`, `obs_dim`, `act_dim` and a summary
of the episode returns and costs as attributes; npz files hold `task` as a 0-d string array.
Reading checks every key, length, dtype and value and raises `DatasetError` naming the file and
the problem.
"""

import dataclasses
import os
import zipfile
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import h5py
import numpy as np

from gold_jax.errors import DatasetError, MissingDatasetError
from gold_jax.files import atomic_path
from gold_jax.types import Transition

FLOAT_KEYS = ('observations', 'next_observations', 'actions', 'rewards', 'costs')
FLAG_KEYS = ('terminals', 'timeouts')
KEYS = FLOAT_KEYS + FLAG_KEYS
HDF5_SUFFIXES = ('.hdf5', '.h5')


@dataclasses.dataclass(frozen=True)
class TrajectoryDataset:
  """Transitions of whole episodes, back to back (float32 arrays, bool flags)."""
  observations: np.ndarray  # (N, obs_dim) float32.
  next_observations: np.ndarray  # (N, obs_dim) float32.
  actions: np.ndarray  # (N, act_dim) float32.
  rewards: np.ndarray  # (N,) float32.
  costs: np.ndarray  # (N,) float32.
  terminals: np.ndarray  # (N,) bool: the next state is terminal.
  timeouts: np.ndarray  # (N,) bool: the episode was truncated after this step.
  task: str = ''  # Task the data was collected on; '' when unknown.

  def __post_init__(self):
    arrays = _validate({k: getattr(self, k) for k in KEYS}, source='dataset')
    for key, value in arrays.items():
      object.__setattr__(self, key, value)

  # --- Shape and episode structure -------------------------------------------------------

  @property
  def obs_dim(self) -> int:
    return self.observations.shape[1]

  @property
  def act_dim(self) -> int:
    return self.actions.shape[1]

  @property
  def num_transitions(self) -> int:
    return self.rewards.shape[0]

  def __len__(self) -> int:
    return self.num_transitions

  def episode_bounds(self) -> List[Tuple[int, int]]:
    """`[start, end)` of each episode; a trailing run without an end flag is an episode too."""
    ends = np.flatnonzero(self.terminals | self.timeouts) + 1
    if ends.size == 0 or ends[-1] != self.num_transitions:
      ends = np.append(ends, self.num_transitions)
    starts = np.concatenate([[0], ends[:-1]])
    return list(zip(starts.tolist(), ends.tolist()))

  @property
  def num_episodes(self) -> int:
    return len(self.episode_bounds())

  def episode_lengths(self) -> np.ndarray:
    return np.array([end - start for start, end in self.episode_bounds()], np.int64)

  def episode_returns(self) -> np.ndarray:
    """Undiscounted reward sum of each episode, float64."""
    return np.array([self.rewards[s:e].sum(dtype=np.float64) for s, e in self.episode_bounds()])

  def episode_costs(self) -> np.ndarray:
    """Undiscounted cost sum of each episode, float64."""
    return np.array([self.costs[s:e].sum(dtype=np.float64) for s, e in self.episode_bounds()])

  def episodes(self) -> List[Dict[str, np.ndarray]]:
    """One dict of arrays (the file keys) per episode."""
    return [{k: getattr(self, k)[s:e] for k in KEYS} for s, e in self.episode_bounds()]

  def obs_stats(self, eps: float = 1e-6) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (at least `eps`) of the observations, float32."""
    mean = self.observations.mean(0, dtype=np.float64)
    std = self.observations.std(0, dtype=np.float64)
    return mean.astype(np.float32), np.maximum(std, eps).astype(np.float32)

  def summary(self) -> Dict[str, float]:
    """Counts and episode return/cost statistics (also written as HDF5 attributes)."""
    returns, costs = self.episode_returns(), self.episode_costs()
    return {
        'num_transitions': self.num_transitions, 'num_episodes': len(returns),
        'return_mean': float(returns.mean()), 'return_std': float(returns.std()),
        'return_min': float(returns.min()), 'return_max': float(returns.max()),
        'cost_mean': float(costs.mean()), 'cost_std': float(costs.std()),
        'cost_min': float(costs.min()), 'cost_max': float(costs.max())}

  def check_compatible(self, task: Optional[str], obs_dim: int, act_dim: int) -> None:
    """Raises DatasetError unless the data fits `task` (skipped if either is unknown) and dims."""
    problems = []
    if task and self.task and task != self.task:
      problems.append(f'it was collected on task {self.task!r}, not the requested {task!r}')
    if self.obs_dim != obs_dim:
      problems.append(f'its observations have size {self.obs_dim}, the task expects {obs_dim}')
    if self.act_dim != act_dim:
      problems.append(f'its actions have size {self.act_dim}, the task expects {act_dim}')
    if problems:
      raise DatasetError(f'dataset (task {self.task or "unknown"!r}) does not fit task '
                         f'{task!r}: ' + '; '.join(problems))

  # --- Sampling --------------------------------------------------------------------------

  def transitions(self, indices: Optional[np.ndarray] = None) -> Transition:
    """The transitions at `indices` (all by default) as a float32 `Transition`."""
    index = slice(None) if indices is None else indices
    return Transition(
        obs=self.observations[index], action=self.actions[index], reward=self.rewards[index],
        cost=self.costs[index], next_obs=self.next_observations[index],
        terminated=self.terminals[index].astype(np.float32))

  def sample(self, rng: np.random.Generator, batch_size: int) -> Transition:
    """`batch_size` transitions drawn uniformly with replacement."""
    return self.transitions(rng.integers(0, self.num_transitions, size=batch_size))

  def sample_n(self, rng: np.random.Generator, k: int, batch_size: int) -> Transition:
    """`k` batches stacked as `(k, batch_size, ...)` for a learner's `update_n`."""
    return self.transitions(rng.integers(0, self.num_transitions, size=(k, batch_size)))

  # --- Building, writing, reading --------------------------------------------------------

  @classmethod
  def from_episodes(cls, episodes: Sequence[Dict[str, np.ndarray]],
                    task: str = '') -> 'TrajectoryDataset':
    """Builds a dataset from per-episode dicts.

    Each episode needs `observations`, `actions`, `rewards`, `costs` (T steps) and either
    `next_observations` (T rows) or `T + 1` observations (the last one the final state).
    `terminals` / `timeouts` are optional: by default the episode is truncated after its last
    step; an episode whose last step is not terminal is always marked as timed out there.
    """
    if not episodes:
      raise DatasetError('from_episodes: no episodes given')
    columns = {k: [] for k in KEYS}
    for i, episode in enumerate(episodes):
      where = f'episode {i}'
      missing = [k for k in ('observations', 'actions', 'rewards', 'costs') if k not in episode]
      if missing:
        raise DatasetError(f'{where}: missing keys {missing}')
      rewards = np.asarray(episode['rewards'])
      steps = rewards.shape[0] if rewards.ndim == 1 else -1
      if steps < 1:
        raise DatasetError(f'{where}: rewards must be a non-empty 1-d array, '
                           f'got shape {rewards.shape}')
      obs = np.asarray(episode['observations'])
      if 'next_observations' in episode:
        next_obs = np.asarray(episode['next_observations'])
      elif obs.shape[0] == steps + 1:
        obs, next_obs = obs[:-1], obs[1:]
      else:
        raise DatasetError(f'{where}: without next_observations, observations need '
                           f'{steps + 1} rows (one per step plus the final state), '
                           f'got {obs.shape[0]}')
      terminals = np.asarray(episode.get('terminals', np.zeros(steps, bool)))
      timeouts = np.asarray(episode.get('timeouts', np.zeros(steps, bool)))
      if terminals.shape != (steps,) or timeouts.shape != (steps,):
        raise DatasetError(f'{where}: terminals/timeouts must have shape ({steps},), got '
                           f'{terminals.shape} and {timeouts.shape}')
      terminals, timeouts = terminals.astype(bool), timeouts.astype(bool).copy()
      if np.any(terminals[:-1] | timeouts[:-1]):
        raise DatasetError(f'{where}: terminals/timeouts set before the last step')
      timeouts[-1] |= not terminals[-1]
      values = dict(observations=obs, next_observations=next_obs, actions=episode['actions'],
                    rewards=rewards, costs=episode['costs'], terminals=terminals,
                    timeouts=timeouts)
      for key, value in _validate(values, source=where).items():
        columns[key].append(value)
    try:
      arrays = {k: np.concatenate(v) for k, v in columns.items()}
    except ValueError as e:
      raise DatasetError(f'from_episodes: episodes disagree on observation or action size: '
                         f'{e}') from e
    return cls(task=task, **arrays)

  def to_file(self, path: str, compression: Optional[str] = 'gzip') -> None:
    """Writes `.hdf5`/`.h5` (DSRL layout) or `.npz`; atomic (temporary file, then rename)."""
    path = os.fspath(path)
    is_hdf5 = _is_hdf5(path)
    with atomic_path(path) as tmp:
      if not is_hdf5:
        with open(tmp, 'wb') as f:
          np.savez(f, task=np.array(self.task), **{k: getattr(self, k) for k in KEYS})
      else:
        with h5py.File(tmp, 'w') as f:
          for key in KEYS:
            value = getattr(self, key)
            f.create_dataset(key, data=value, compression=compression if value.size else None)
          f.attrs['task'] = self.task
          f.attrs['obs_dim'] = self.obs_dim
          f.attrs['act_dim'] = self.act_dim
          for name, value in self.summary().items():
            f.attrs[name] = value

  @classmethod
  def load(cls, path: str) -> 'TrajectoryDataset':
    """Reads and validates a `.hdf5`/`.h5` or `.npz` file (extra keys are ignored)."""
    path = os.fspath(path)
    if not os.path.exists(path):
      raise MissingDatasetError(f'{path}: no such dataset file')
    try:
      if _is_hdf5(path):
        with h5py.File(path, 'r') as f:
          arrays = {k: f[k][()] for k in KEYS if k in f and isinstance(f[k], h5py.Dataset)}
          task = f.attrs.get('task', '')
      else:
        with np.load(path, allow_pickle=False) as f:
          arrays = {k: f[k] for k in KEYS if k in f.files}
          task = f['task'][()] if 'task' in f.files else ''
    except (OSError, ValueError, KeyError, RuntimeError, EOFError, zipfile.BadZipFile,
            zlib.error) as e:
      raise DatasetError(f'{path}: unreadable (truncated or corrupt file?): '
                         f'{type(e).__name__}: {e}') from e
    missing = [k for k in KEYS if k not in arrays]
    if missing:
      raise DatasetError(f'{path}: missing keys {missing}')
    task = task.decode() if isinstance(task, bytes) else str(task)
    try:
      return cls(task=task, **_validate(arrays, source=path))
    except DatasetError as e:
      raise DatasetError(f'{path}: {e}') from None


def _is_hdf5(path: str) -> bool:
  if path.endswith(HDF5_SUFFIXES):
    return True
  if path.endswith('.npz'):
    return False
  raise DatasetError(f'{path}: unknown dataset format (expected .hdf5, .h5 or .npz)')


def _validate(arrays: Dict[str, np.ndarray], source: str) -> Dict[str, np.ndarray]:
  """Checks ranks, lengths, dtypes and finiteness; returns float32 arrays and bool flags."""
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  n = arrays['rewards'].shape[0] if arrays['rewards'].ndim == 1 else None
  if not n:
    raise DatasetError(f'{source}: rewards must be a non-empty 1-d array, '
                       f'got shape {arrays["rewards"].shape}')
  ranks = dict(rewards=1, observations=2, next_observations=2, actions=2, costs=1,
               terminals=1, timeouts=1)
  for key, rank in ranks.items():
    value = arrays[key]
    if value.ndim != rank:
      raise DatasetError(f'{source}: {key} must be {rank}-d, got shape {value.shape}')
    if value.shape[0] != n:
      raise DatasetError(f'{source}: inconsistent lengths: {key} has {value.shape[0]} rows, '
                         f'rewards has {n}')
  if arrays['next_observations'].shape != arrays['observations'].shape:
    raise DatasetError(f'{source}: next_observations shape {arrays["next_observations"].shape} '
                       f'differs from observations shape {arrays["observations"].shape}')
  out = {}
  for key in FLOAT_KEYS:
    value = arrays[key]
    if value.dtype.kind != 'f':
      raise DatasetError(f'{source}: {key} must be floating point, got dtype {value.dtype}')
    value = value.astype(np.float32, copy=False)
    if not np.all(np.isfinite(value)):
      bad = int(np.flatnonzero(~np.isfinite(value).reshape(n, -1).all(1))[0])
      raise DatasetError(f'{source}: {key} has NaN or inf values (first at row {bad})')
    out[key] = value
  for key in FLAG_KEYS:
    value = arrays[key]
    if value.dtype.kind not in 'biuf':
      raise DatasetError(f'{source}: {key} must be boolean, got dtype {value.dtype}')
    if value.dtype.kind != 'b' and not np.all((value == 0) | (value == 1)):
      raise DatasetError(f'{source}: {key} must hold only 0 and 1')
    out[key] = value.astype(bool)
  if out['costs'].size and out['costs'].min() < 0:
    raise DatasetError(f'{source}: costs must be >= 0, got minimum {out["costs"].min()}')
  return out
