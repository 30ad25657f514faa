"""Host-side ring buffer of transitions, each labelled with who acted (guide or student) and
whether its episode ended there, so that n-step transitions can be sampled."""

import os
import zipfile
from typing import Dict, Union

import numpy as np

from gold_jax.files import atomic_open
from gold_jax.types import NStepTransition, Transition

# Source labels: which policy chose the action of a transition.
STUDENT = 0
GUIDE = 1

_FIELDS = Transition._fields
_SCALAR_FIELDS = ('reward', 'cost', 'terminated')
_META_KEYS = ('capacity', 'size', 'pointer')


class ReplayBuffer:
  """Fixed-capacity numpy ring buffer; once full, new transitions overwrite the oldest.

  Everything is float32 except `source` (int8, `GUIDE` or `STUDENT`) and `done` (bool: the
  episode ended at the transition, terminated or truncated). Sampling draws indices uniformly
  with replacement from what is stored and returns a `Transition` of numpy arrays (or, with
  `n_step` > 1, an `NStepTransition`).
  """

  def __init__(self, obs_dim: int, act_dim: int, capacity: int):
    if capacity <= 0:
      raise ValueError(f'capacity must be positive, got {capacity}')
    self.obs_dim, self.act_dim, self.capacity = int(obs_dim), int(act_dim), int(capacity)
    self._data = {
        'obs': np.zeros((capacity, obs_dim), np.float32),
        'action': np.zeros((capacity, act_dim), np.float32),
        'reward': np.zeros((capacity,), np.float32),
        'cost': np.zeros((capacity,), np.float32),
        'next_obs': np.zeros((capacity, obs_dim), np.float32),
        'terminated': np.zeros((capacity,), np.float32),
    }
    self._source = np.zeros((capacity,), np.int8)
    self._done = np.zeros((capacity,), bool)
    self.size = 0
    self.pointer = 0  # Index the next transition is written to.

  def __len__(self) -> int:
    return self.size

  def add(self, obs, action, reward, cost, next_obs, terminated, source, done=None) -> None:
    """Adds one transition (`obs` of shape `(obs_dim,)`) or `n` of them (`(n, obs_dim)`).

    `source` is `GUIDE` or `STUDENT`, a scalar or one label per transition; `done` marks the
    transitions that end their episode (terminated or truncated; None: `terminated`). Adding
    more than `capacity` at once keeps the last `capacity`.
    """
    obs = np.asarray(obs, np.float32)
    single = obs.ndim == 1
    n = 1 if single else obs.shape[0]
    values = dict(obs=obs, action=action, reward=reward, cost=cost, next_obs=next_obs,
                  terminated=terminated)
    shapes = {'obs': (self.obs_dim,), 'action': (self.act_dim,), 'next_obs': (self.obs_dim,)}
    for name, value in values.items():
      expected = (n, *shapes.get(name, ()))
      value = np.asarray(value, np.float32).reshape((1,) * single + np.shape(value))
      if value.shape != expected:
        raise ValueError(f'add: field {name!r} has shape {value.shape[single:]}, expected '
                         f'{expected[single:]}')
      values[name] = value
    source = np.broadcast_to(np.asarray(source), (n,))
    done = (values['terminated'] != 0 if done is None
            else np.broadcast_to(np.asarray(done, bool), (n,)))
    if not np.all((source == GUIDE) | (source == STUDENT)):
      raise ValueError(f'add: source must be GUIDE ({GUIDE}) or STUDENT ({STUDENT}), got '
                       f'{np.unique(source).tolist()}')
    keep = slice(max(0, n - self.capacity), n)
    idx = (self.pointer + np.arange(n)[keep]) % self.capacity
    for name, value in values.items():
      self._data[name][idx] = value[keep]
    self._source[idx] = source[keep]
    self._done[idx] = done[keep]
    self.pointer = (self.pointer + n) % self.capacity
    self.size = min(self.size + n, self.capacity)

  def _gather(self, idx: np.ndarray) -> Transition:
    return Transition(**{name: self._data[name][idx] for name in _FIELDS})

  def sample(self, batch_size: int, rng: np.random.Generator) -> Transition:
    """Uniform sample with replacement: each field has leading axis `batch_size`."""
    return self._gather(self._indices((batch_size,), rng))

  def sample_stacked(self, k: int, batch_size: int, rng: np.random.Generator,
                     n_step: int = 1, discount: float = 1.0, stride: int = 1) -> Transition:
    """`k` batches in one index draw, fields shaped `(k, batch_size, ...)` for `update_n`.

    With `n_step` > 1 they are `NStepTransition`s (`n_step_transitions`); `stride` is the number
    of envs whose transitions were added together each step (an env's next transition lies
    `stride` entries later). `n_step` 1 draws and returns exactly what it always did.
    """
    idx = self._indices((k, batch_size), rng)
    if n_step == 1:
      return self._gather(idx)
    return self.n_step_transitions(idx, n_step, discount, stride)

  def n_step_transitions(self, idx: np.ndarray, n_step: int, discount: float,
                         stride: int = 1) -> NStepTransition:
    """The n-step transitions starting at the stored transitions `idx` (any shape).

    From transition t of an env, steps t, t+1, ... are summed while the episode goes on (no
    `done` before them) and they are stored (older than the newest entry), k <= n of them:
    reward Σ_{i<k} γ^i r_{t+i} (cost alike), `next_obs` and `terminated` of step t+k−1, and
    `discount` γ^k.
    """
    if n_step < 1 or stride < 1:
      raise ValueError(f'n_step and stride must be >= 1, got {n_step}, {stride}')
    oldest = self.pointer if self.size == self.capacity else 0
    age = (idx - oldest) % self.capacity  # 0 for the oldest stored transition
    reward = np.zeros(idx.shape, np.float32)
    cost = np.zeros(idx.shape, np.float32)
    scale = np.ones(idx.shape, np.float32)
    alive = np.ones(idx.shape, bool)
    last = idx
    for j in range(n_step):
      current = (idx + j * stride) % self.capacity
      if j:
        alive &= (age + j * stride < self.size) & ~self._done[last]
      reward += np.where(alive, scale * self._data['reward'][current], 0.0)
      cost += np.where(alive, scale * self._data['cost'][current], 0.0)
      last = np.where(alive, current, last)
      scale = np.where(alive, scale * np.float32(discount), scale)
    return NStepTransition(obs=self._data['obs'][idx], action=self._data['action'][idx],
                           reward=reward, cost=cost, next_obs=self._data['next_obs'][last],
                           terminated=self._data['terminated'][last], discount=scale)

  def _indices(self, shape, rng: np.random.Generator) -> np.ndarray:
    if self.size == 0:
      raise ValueError('cannot sample from an empty replay buffer')
    return rng.integers(0, self.size, size=shape)

  def sources(self) -> np.ndarray:
    """Source labels of the stored transitions (int8), in storage order."""
    return self._source[:self.size].copy()

  def source_fraction(self) -> Dict[str, float]:
    """Shares of stored transitions collected by the guide and by the student (0 when empty)."""
    if self.size == 0:
      return {'guide': 0.0, 'student': 0.0}
    guide = float(np.count_nonzero(self._source[:self.size] == GUIDE)) / self.size
    return {'guide': guide, 'student': 1.0 - guide}

  def grown(self, capacity: int) -> 'ReplayBuffer':
    """A buffer of the larger `capacity` holding these transitions, oldest first (a run
    extended past the budget its buffer was sized for keeps every transition from then on)."""
    if capacity < self.capacity:
      raise ValueError(f'cannot shrink a replay buffer from {self.capacity} to {capacity}')
    order = (np.arange(self.size) if self.size < self.capacity else
             np.roll(np.arange(self.capacity), -self.pointer))
    bigger = type(self)(self.obs_dim, self.act_dim, capacity)
    for name, values in self._data.items():
      bigger._data[name][:self.size] = values[order]
    bigger._source[:self.size] = self._source[order]
    bigger._done[:self.size] = self._done[order]
    bigger.size, bigger.pointer = self.size, self.size % capacity
    return bigger

  def to_state_dict(self) -> Dict[str, np.ndarray]:
    """Everything needed to rebuild the buffer exactly, as numpy arrays (copies)."""
    state = {name: value.copy() for name, value in self._data.items()}
    state['source'] = self._source.copy()
    state['done'] = self._done.copy()
    state.update({key: np.asarray(getattr(self, key), np.int64) for key in _META_KEYS})
    return state

  @classmethod
  def from_state_dict(cls, state: Dict[str, np.ndarray], origin: str = 'state dict'
                      ) -> 'ReplayBuffer':
    """Inverse of `to_state_dict`; inconsistent keys or shapes raise `ValueError`. A state
    without `done` (written before it was stored) takes `terminated` for it."""
    missing = [k for k in (*_FIELDS, 'source', *_META_KEYS) if k not in state]
    if missing:
      raise ValueError(f'{origin}: not a replay buffer, missing keys {missing}')
    capacity, size, pointer = (int(np.asarray(state[k])) for k in _META_KEYS)
    obs = np.asarray(state['obs'])
    action = np.asarray(state['action'])
    if obs.ndim != 2 or action.ndim != 2:
      raise ValueError(f'{origin}: obs and action must be 2-d, got shapes {obs.shape} and '
                       f'{action.shape}')
    if not 0 <= size <= capacity or not 0 <= pointer < capacity or (
        size < capacity and pointer != size):
      raise ValueError(f'{origin}: inconsistent capacity={capacity}, size={size}, '
                       f'pointer={pointer}')
    buffer = cls(obs.shape[1], action.shape[1], capacity)
    expected = {name: value.shape for name, value in buffer._data.items()}
    expected['source'] = (capacity,)
    if 'done' in state:
      expected['done'] = (capacity,)
    for name, shape in expected.items():
      if np.shape(state[name]) != shape:
        raise ValueError(f'{origin}: field {name!r} has shape {np.shape(state[name])}, '
                         f'expected {shape} for capacity {capacity}')
    for name in _FIELDS:
      buffer._data[name][...] = state[name]
    buffer._source[...] = state['source']
    buffer._done[...] = state['done'] if 'done' in state else buffer._data['terminated'] != 0
    buffer.size, buffer.pointer = size, pointer
    return buffer

  def save(self, path: Union[str, os.PathLike]) -> None:
    """Writes an uncompressed `.npz` atomically (`gold_jax.files.atomic_open`)."""
    with atomic_open(path, 'wb') as f:
      np.savez(f, **self.to_state_dict())

  @classmethod
  def load(cls, path: Union[str, os.PathLike]) -> 'ReplayBuffer':
    """Reads a buffer written by `save`; returns a new buffer (it does not load in place)."""
    path = os.fspath(path)
    try:
      with np.load(path, allow_pickle=False) as npz:
        state = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
      raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
      raise ValueError(f'{path}: truncated or not a replay buffer file ({e})') from e
    return cls.from_state_dict(state, origin=path)
