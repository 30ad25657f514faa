"""Tests for the replay buffer: ring semantics, sampling shapes, source shares, save/load."""

import os

import chex
import numpy as np
import pytest

from gold_jax.data.replay import GUIDE, STUDENT, ReplayBuffer
from gold_jax.types import Transition

OBS_DIM, ACT_DIM = 3, 2


def _transitions(start: int, n: int):
  """n transitions whose every field encodes its index, so the rows can be identified."""
  i = np.arange(start, start + n, dtype=np.float32)
  return dict(obs=np.stack([i] * OBS_DIM, -1), action=np.stack([-i] * ACT_DIM, -1),
              reward=i, cost=i % 2, next_obs=np.stack([i + 1] * OBS_DIM, -1),
              terminated=(i % 5 == 0).astype(np.float32))


def _fill(buffer, start, n, source):
  batch = _transitions(start, n)
  for j in range(n):
    buffer.add(**{k: v[j] for k, v in batch.items()}, source=source)


def test_single_adds_store_in_order():
  buffer = ReplayBuffer(OBS_DIM, ACT_DIM, capacity=10)
  _fill(buffer, 0, 4, STUDENT)
  assert (len(buffer), buffer.size, buffer.pointer) == (4, 4, 4)
  state = buffer.to_state_dict()
  np.testing.assert_array_equal(state['reward'][:4], [0, 1, 2, 3])
  np.testing.assert_array_equal(state['obs'][2], [2, 2, 2])
  np.testing.assert_array_equal(state['next_obs'][2], [3, 3, 3])
  np.testing.assert_array_equal(state['terminated'][:4], [1, 0, 0, 0])
  assert state['obs'].dtype == np.float32 and state['source'].dtype == np.int8


def test_wraparound_overwrites_oldest():
  buffer = ReplayBuffer(OBS_DIM, ACT_DIM, capacity=5)
  _fill(buffer, 0, 7, STUDENT)  # 5, 6 overwrite slots 0, 1.
  assert (buffer.size, buffer.pointer) == (5, 2)
  np.testing.assert_array_equal(buffer.to_state_dict()['reward'], [5, 6, 2, 3, 4])


def test_batched_add_matches_single_adds_and_wraps():
  single, batched = ReplayBuffer(OBS_DIM, ACT_DIM, 6), ReplayBuffer(OBS_DIM, ACT_DIM, 6)
  _fill(single, 0, 4, GUIDE)
  _fill(single, 4, 4, STUDENT)
  batched.add(**_transitions(0, 4), source=GUIDE)
  batched.add(**_transitions(4, 4), source=np.full(4, STUDENT))
  for key, value in single.to_state_dict().items():
    np.testing.assert_array_equal(batched.to_state_dict()[key], value, err_msg=key)
  np.testing.assert_array_equal(batched.to_state_dict()['reward'], [6, 7, 2, 3, 4, 5])


def test_batched_add_larger_than_capacity_keeps_last():
  buffer = ReplayBuffer(OBS_DIM, ACT_DIM, capacity=4)
  buffer.add(**_transitions(0, 1), source=GUIDE)
  buffer.add(**_transitions(10, 9), source=STUDENT)  # Writes start at slot 1.
  assert (buffer.size, buffer.pointer) == (4, 2)
  # Indices 15..18 are kept; 18 was the 10th write, so it lands at (1 + 8) % 4 = 1.
  np.testing.assert_array_equal(buffer.to_state_dict()['reward'], [17, 18, 15, 16])
  assert buffer.source_fraction() == {'guide': 0.0, 'student': 1.0}


def test_add_validates_shapes_and_source():
  buffer = ReplayBuffer(OBS_DIM, ACT_DIM, capacity=4)
  good = {k: v[0] for k, v in _transitions(0, 1).items()}
  with pytest.raises(ValueError, match="'action'"):
    buffer.add(**{**good, 'action': np.zeros(3)}, source=GUIDE)
  with pytest.raises(ValueError, match='source'):
    buffer.add(**good, source=2)
  assert buffer.size == 0


def test_sample_shapes_dtypes_and_contents():
  buffer = ReplayBuffer(OBS_DIM, ACT_DIM, capacity=100)
  _fill(buffer, 0, 10, STUDENT)
  rng = np.random.default_rng(0)
  batch = buffer.sample(32, rng)
  assert isinstance(batch, Transition)
  chex.assert_shape([batch.obs, batch.next_obs], (32, OBS_DIM))
  chex.assert_shape(batch.action, (32, ACT_DIM))
  chex.assert_shape([batch.reward, batch.cost, batch.terminated], (32,))
  chex.assert_type(list(batch), np.float32)
  # Only the 10 stored rows can come out, and each row stays consistent.
  assert batch.reward.min() >= 0 and batch.reward.max() <= 9
  np.testing.assert_array_equal(batch.obs[:, 0], batch.reward)
  np.testing.assert_array_equal(batch.next_obs[:, 0], batch.reward + 1)
  np.testing.assert_array_equal(batch.action[:, 1], -batch.reward)


def test_sample_stacked_one_draw_and_uniform():
  buffer = ReplayBuffer(OBS_DIM, ACT_DIM, capacity=8)
  _fill(buffer, 0, 8, STUDENT)
  stacked = buffer.sample_stacked(4, 16, np.random.default_rng(1))
  chex.assert_shape(stacked.obs, (4, 16, OBS_DIM))
  chex.assert_shape(stacked.action, (4, 16, ACT_DIM))
  chex.assert_shape([stacked.reward, stacked.cost, stacked.terminated], (4, 16))
  # One vectorised draw: same generator state gives the same indices as a flat draw.
  flat = buffer.sample(64, np.random.default_rng(1))
  np.testing.assert_array_equal(stacked.reward.reshape(-1), flat.reward)
  counts = np.bincount(buffer.sample(80_000, np.random.default_rng(2)).reward.astype(int))
  np.testing.assert_allclose(counts / 80_000, np.full(8, 1 / 8), atol=0.01)


def test_sample_empty_raises():
  with pytest.raises(ValueError, match='empty'):
    ReplayBuffer(OBS_DIM, ACT_DIM, 4).sample(2, np.random.default_rng(0))


def test_source_fraction():
  buffer = ReplayBuffer(OBS_DIM, ACT_DIM, capacity=10)
  assert buffer.source_fraction() == {'guide': 0.0, 'student': 0.0}
  buffer.add(**_transitions(0, 3), source=GUIDE)
  buffer.add(**_transitions(3, 1), source=STUDENT)
  assert buffer.source_fraction() == pytest.approx({'guide': 0.75, 'student': 0.25})
  buffer.add(**_transitions(4, 4), source=np.array([GUIDE, STUDENT, STUDENT, STUDENT]))
  assert buffer.source_fraction() == pytest.approx({'guide': 0.5, 'student': 0.5})
  np.testing.assert_array_equal(buffer.sources(), [1, 1, 1, 0, 1, 0, 0, 0])
  buffer.add(**_transitions(8, 10), source=STUDENT)  # Every guide row is overwritten.
  assert buffer.source_fraction() == {'guide': 0.0, 'student': 1.0}


def test_save_load_round_trip_continues_identically(tmp_path):
  buffer = ReplayBuffer(OBS_DIM, ACT_DIM, capacity=7)
  buffer.add(**_transitions(0, 9), source=np.arange(9) % 2)
  path = tmp_path / 'sub' / 'replay.npz'
  buffer.save(path)
  assert os.listdir(path.parent) == ['replay.npz']  # No temporary file is left behind.
  loaded = ReplayBuffer.load(path)
  assert (loaded.capacity, loaded.size, loaded.pointer) == (7, 7, 2)
  for key, value in buffer.to_state_dict().items():
    np.testing.assert_array_equal(loaded.to_state_dict()[key], value, err_msg=key)
  for b in (buffer, loaded):
    b.add(**_transitions(100, 1), source=GUIDE)
  a, b = (x.sample_stacked(2, 5, np.random.default_rng(3)) for x in (buffer, loaded))
  chex.assert_trees_all_equal(a, b)


def test_from_state_dict_rejects_bad_shapes_and_keys():
  state = ReplayBuffer(OBS_DIM, ACT_DIM, capacity=4).to_state_dict()
  with pytest.raises(ValueError, match=r"missing keys \['cost'\]"):
    ReplayBuffer.from_state_dict({k: v for k, v in state.items() if k != 'cost'})
  with pytest.raises(ValueError, match="'reward' has shape"):
    ReplayBuffer.from_state_dict({**state, 'reward': np.zeros(5, np.float32)})
  with pytest.raises(ValueError, match='inconsistent'):
    ReplayBuffer.from_state_dict({**state, 'size': np.int64(9)})


def test_load_errors_name_path(tmp_path):
  buffer = ReplayBuffer(OBS_DIM, ACT_DIM, capacity=50)
  buffer.add(**_transitions(0, 50), source=GUIDE)
  path = tmp_path / 'replay.npz'
  buffer.save(path)
  data = path.read_bytes()
  truncated = tmp_path / 'truncated.npz'
  truncated.write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match='truncated.npz: truncated'):
    ReplayBuffer.load(truncated)
  other = tmp_path / 'other.npz'
  np.savez(other, obs=np.zeros((2, 3)))
  with pytest.raises(ValueError, match='other.npz: not a replay buffer'):
    ReplayBuffer.load(other)
  with pytest.raises(FileNotFoundError):
    ReplayBuffer.load(tmp_path / 'missing.npz')


@pytest.mark.parametrize('filled', [3, 5, 7])  # Part full, just full, wrapped around.
def test_grown_keeps_transitions_oldest_first_then_fills(filled):
  small = ReplayBuffer(OBS_DIM, ACT_DIM, capacity=5)
  _fill(small, 0, filled, GUIDE)
  big = small.grown(8)
  kept = list(range(max(0, filled - 5), filled))
  assert (big.capacity, big.size, big.pointer) == (8, len(kept), len(kept))
  np.testing.assert_array_equal(big.to_state_dict()['reward'][:len(kept)], kept)
  np.testing.assert_array_equal(big.sources(), [GUIDE] * len(kept))
  _fill(big, filled, 8, STUDENT)  # The larger buffer overwrites its own oldest, in order.
  expected = list(range(filled + 8 - 8, filled + 8))
  state = big.to_state_dict()
  assert sorted(state['reward'].tolist()) == expected
  with pytest.raises(ValueError, match='shrink'):
    small.grown(4)
