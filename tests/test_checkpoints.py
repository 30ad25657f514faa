"""Tests for checkpoints: exact round trips, keep-last-N, config and corruption errors."""

import dataclasses
import glob
import json
import os
from typing import Tuple

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state

from gold_jax import checkpoints
from gold_jax import errors
from gold_jax.checkpoints import CheckpointError, CheckpointManager

# After a failed read of a truncated file, orbax leaves a callback on a closed asyncio loop
# that is reported when garbage-collected (during a later test); harmless.
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')


@dataclasses.dataclass(frozen=True)
class ToyConfig:
  learning_rate: float = 1e-2  # Adam step size.
  hidden_dims: Tuple[int, ...] = (8, 8)  # Hidden layer widths.
  tau: float = 0.005  # Target update rate.


@flax.struct.dataclass
class ToyState:
  actor: train_state.TrainState
  target_params: flax.core.FrozenDict
  rng: jax.Array
  step: jax.Array
  config: ToyConfig = flax.struct.field(pytree_node=False)


class _Net(nn.Module):
  hidden_dims: Tuple[int, ...]

  @nn.compact
  def __call__(self, x):
    for h in self.hidden_dims:
      x = nn.relu(nn.Dense(h)(x))
    return nn.Dense(2)(x)


def _init(key, obs_dim=3, config=ToyConfig(), typed_key=True) -> ToyState:
  net = _Net(config.hidden_dims)
  init_key, key = jax.random.split(key)
  params = net.init(init_key, jnp.zeros((1, obs_dim)))
  actor = train_state.TrainState.create(apply_fn=net.apply, params=params,
                                        tx=optax.adam(config.learning_rate))
  if not typed_key:
    key = jax.random.key_data(key)
  return ToyState(actor, params, key, jnp.int32(0), config)


@jax.jit
def _update(state: ToyState, x: jax.Array):
  """One Adam step on a noisy regression loss, splitting the state's key like a learner."""
  typed = jax.dtypes.issubdtype(state.rng.dtype, jax.dtypes.prng_key)
  rng = state.rng if typed else jax.random.wrap_key_data(state.rng)
  rng, noise_key = jax.random.split(rng)
  target = jax.random.normal(noise_key, (x.shape[0], 2))
  loss_fn = lambda p: jnp.mean((state.actor.apply_fn(p, x) - target) ** 2)
  loss, grads = jax.value_and_grad(loss_fn)(state.actor.params)
  actor = state.actor.apply_gradients(grads=grads)
  target_params = optax.incremental_update(actor.params, state.target_params,
                                           state.config.tau)
  rng = rng if typed else jax.random.key_data(rng)
  return state.replace(actor=actor, target_params=target_params, rng=rng,
                       step=state.step + 1), loss


def _trained(steps=3, **kwargs) -> ToyState:
  state = _init(jax.random.key(0), **kwargs)
  x = jnp.linspace(-1, 1, 12).reshape(4, 3)
  for _ in range(steps):
    state, _ = _update(state, x)
  return state


def _assert_bitwise_equal(a: ToyState, b: ToyState):
  key_data = lambda s: jax.random.key_data(s.rng) if jax.dtypes.issubdtype(
      s.rng.dtype, jax.dtypes.prng_key) else s.rng
  chex.assert_trees_all_equal(a.actor.params, b.actor.params, strict=False)
  chex.assert_trees_all_equal(a.actor.opt_state, b.actor.opt_state, strict=False)
  chex.assert_trees_all_equal(a.target_params, b.target_params, strict=False)
  np.testing.assert_array_equal(key_data(a), key_data(b))
  assert a.rng.dtype == b.rng.dtype
  assert int(a.step) == int(b.step) and int(a.actor.step) == int(b.actor.step)


@pytest.mark.parametrize('typed_key', [True, False])
def test_round_trip_is_exact_and_continues_identically(tmp_path, typed_key):
  state = _trained(typed_key=typed_key)
  manager = CheckpointManager(tmp_path / 'ckpt')
  manager.save(3, state, extra={'task': 'SafetyCarCircle-v0'})
  template = _init(jax.random.key(42), typed_key=typed_key)  # Different values, same shapes.
  restored = manager.restore(template)
  _assert_bitwise_equal(state, restored)
  assert restored.config is template.config and restored.actor.tx is template.actor.tx
  x = jnp.ones((4, 3))
  (next_a, loss_a), (next_b, loss_b) = _update(state, x), _update(restored, x)
  assert float(loss_a) == float(loss_b)
  _assert_bitwise_equal(next_a, next_b)


def test_metadata_sidecar(tmp_path):
  manager = CheckpointManager(tmp_path)
  manager.save(7, _trained(steps=1), extra={'task': 'SafetyCarCircle-v0', 'obs_dim': 3})
  metadata = manager.read_metadata()
  assert metadata['step'] == 7
  assert metadata['config'] == {'learning_rate': 1e-2, 'hidden_dims': [8, 8], 'tau': 0.005}
  assert metadata['config_class'].endswith('ToyConfig')
  assert metadata['state_class'].endswith('ToyState')
  assert metadata['extra'] == {'task': 'SafetyCarCircle-v0', 'obs_dim': 3}
  with pytest.raises(TypeError, match='JSON'):
    manager.save(8, _trained(steps=1), extra={'bad': object()})
  assert manager.all_steps() == [7]


def test_keeps_last_n_and_resumes_listing(tmp_path):
  manager = CheckpointManager(tmp_path, max_to_keep=2)
  assert manager.latest_step() is None and manager.all_steps() == []
  state = _init(jax.random.key(0))
  for step in range(5):
    state, _ = _update(state, jnp.ones((2, 3)))
    manager.save(step * 10, state)
  assert manager.all_steps() == [30, 40] and manager.latest_step() == 40
  assert sorted(os.listdir(tmp_path)) == ['30', '40']
  reopened = CheckpointManager(tmp_path, max_to_keep=2)  # A resumed run sees the same steps.
  assert reopened.all_steps() == [30, 40]
  older = reopened.restore(_init(jax.random.key(1)), step=30)
  assert int(older.step) == 4
  _assert_bitwise_equal(reopened.restore(_init(jax.random.key(1))), state)
  with pytest.raises(FileNotFoundError, match='step 20'):
    reopened.restore(_init(jax.random.key(1)), step=20)


def test_different_config_names_fields(tmp_path):
  manager = CheckpointManager(tmp_path)
  manager.save(1, _trained(steps=1))
  other = ToyConfig(learning_rate=3e-4, hidden_dims=(16, 16))
  with pytest.raises(CheckpointError) as error:
    manager.restore(_init(jax.random.key(0), config=other))
  message = str(error.value)
  assert str(tmp_path / '1') in message
  assert 'learning_rate (saved 0.01, template 0.0003)' in message
  assert 'hidden_dims (saved [8, 8], template [16, 16])' in message
  assert 'tau' not in message


@dataclasses.dataclass(frozen=True)
class NewerToyConfig(ToyConfig):
  """ToyConfig after a release that added a field."""
  dropout_impl: str = 'hash'


def test_field_added_since_the_checkpoint_takes_its_default(tmp_path):
  manager = CheckpointManager(tmp_path)
  saved = _trained(steps=1)
  manager.save(1, saved)
  restored = manager.restore(_init(jax.random.key(0), config=NewerToyConfig()))
  chex.assert_trees_all_equal(restored.actor.params, saved.actor.params)
  with pytest.raises(CheckpointError, match=r"dropout_impl \(saved '<missing>', template 'x'\)"):
    manager.restore(_init(jax.random.key(0), config=NewerToyConfig(dropout_impl='x')))


def test_shape_mismatch_names_leaves(tmp_path):
  manager = CheckpointManager(tmp_path)
  manager.save(1, _trained(steps=1))
  with pytest.raises(CheckpointError, match=r'actor/params/params/Dense_0/kernel: checkpoint '
                     r'\(3, 8\) float32, template \(5, 8\) float32'):
    manager.restore(_init(jax.random.key(0), obs_dim=5))


def test_truncated_arrays_raise_naming_path(tmp_path):
  manager = CheckpointManager(tmp_path)
  manager.save(2, _trained(steps=1))
  data_files = glob.glob(str(tmp_path / '2' / 'state' / '**' / 'd' / '*'), recursive=True)
  assert data_files
  for name in data_files:
    with open(name, 'r+b') as f:
      f.truncate(os.path.getsize(name) // 2)
  with pytest.raises(CheckpointError, match=f'{tmp_path / "2"}: corrupt or truncated'):
    manager.restore(_init(jax.random.key(0)))


def test_corrupt_metadata_raises_naming_path(tmp_path):
  manager = CheckpointManager(tmp_path)
  manager.save(2, _trained(steps=1))
  with open(tmp_path / '2' / 'metadata' / 'metadata', 'w') as f:
    f.write('{"step": 2, "conf')
  with pytest.raises(CheckpointError, match=f'{tmp_path / "2"}: unreadable checkpoint metadata'):
    manager.restore(_init(jax.random.key(0)))


def _truncate_arrays(step_dir) -> None:
  data_files = glob.glob(os.path.join(step_dir, 'state', '**', 'd', '*'), recursive=True)
  assert data_files
  for name in data_files:
    with open(name, 'r+b') as f:
      f.truncate(os.path.getsize(name) // 2)


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
  manager = CheckpointManager(tmp_path)
  older, newer = _trained(steps=1), _trained(steps=2)
  manager.save(1, older)
  manager.save(2, newer)
  _truncate_arrays(tmp_path / '2')
  with caplog.at_level('WARNING'):
    restored = manager.restore(_init(jax.random.key(0)))
  _assert_bitwise_equal(restored, older)
  assert any(f'{tmp_path / "2"}: corrupt or truncated' in r.getMessage() for r in caplog.records)
  with pytest.raises(errors.CorruptCheckpointError):
    manager.restore(_init(jax.random.key(0)), step=2)  # An explicit step never falls back.
  # Reading does not touch the directory; a resuming run sets the damaged step aside.
  assert manager.all_steps() == [1, 2] and manager.latest_intact_step() == 1
  assert manager.latest_intact_step(set_aside=True) == 1
  assert manager.all_steps() == [1] and (tmp_path / 'corrupt-2').is_dir()
  manager.save(2, newer)  # The step can be written again.
  _assert_bitwise_equal(manager.restore(_init(jax.random.key(0))), newer)


def test_extra_check_and_nothing_intact(tmp_path):
  manager = CheckpointManager(tmp_path)
  manager.save(1, _trained(steps=1))
  manager.save(2, _trained(steps=2))

  def check(step):
    if step == 2:
      raise errors.CorruptCheckpointError('replay of step 2 is damaged')

  assert manager.latest_intact_step(check=check) == 1
  _truncate_arrays(tmp_path / '1')
  assert manager.latest_intact_step(check=check) is None


def test_checkpoint_dir_of_runs_and_checkpoint_directories(tmp_path):
  run = tmp_path / 'run'
  assert checkpoints.checkpoint_dir(run, of_run=True) == os.path.join(run, 'checkpoints')
  with pytest.raises(FileNotFoundError, match='does not exist'):
    checkpoints.checkpoint_dir(run)
  (run / 'checkpoints').mkdir(parents=True)
  assert checkpoints.checkpoint_dir(run) == str(run / 'checkpoints')
  assert checkpoints.checkpoint_dir(run / 'checkpoints') == str(run / 'checkpoints')


def test_save_and_load_pytree(tmp_path):
  tree = {'params': {'w': np.arange(6, dtype=np.float32).reshape(2, 3)},
          'scale': np.float32(0.5)}
  checkpoints.save_pytree(tmp_path / 'guide', tree, {'task': 'x', 'K': 20})
  loaded, metadata = checkpoints.load_pytree(tmp_path / 'guide')
  assert metadata == {'task': 'x', 'K': 20}
  chex.assert_trees_all_equal(jax.tree.map(np.asarray, loaded), tree, strict=False)
  with pytest.raises(FileNotFoundError):
    checkpoints.load_pytree(tmp_path / 'missing')
  json.loads((tmp_path / 'guide' / 'metadata' / 'metadata').read_text())  # Plain JSON file.


def test_real_iql_state_round_trip(tmp_path):
  from gold_jax.agents import iql  # pylint: disable=g-import-not-at-top
  from gold_jax.types import Transition  # pylint: disable=g-import-not-at-top
  config = iql.Config(hidden_dims=(8, 8))
  rng = np.random.default_rng(0)
  f32 = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  batch = Transition(f32(16, 3), jnp.tanh(f32(16, 2)), f32(16), jnp.zeros(16), f32(16, 3),
                     jnp.zeros(16))
  state = iql.init(jax.random.key(0), 3, 2, config)
  for _ in range(2):
    state, _ = iql.update(state, batch)
  manager = CheckpointManager(tmp_path)
  manager.save(2, state, extra={'task': 'toy'})
  assert manager.read_metadata()['obs_dim'] == 3 and manager.read_metadata()['act_dim'] == 2
  restored = manager.restore(iql.init(jax.random.key(9), 3, 2, config))
  chex.assert_trees_all_equal(jax.random.key_data(restored.rng), jax.random.key_data(state.rng))
  chex.assert_trees_all_equal(restored.replace(rng=None), state.replace(rng=None))
  (next_a, metrics_a), (next_b, metrics_b) = iql.update(state, batch), iql.update(restored, batch)
  chex.assert_trees_all_equal(metrics_a, metrics_b)
  chex.assert_trees_all_equal(next_a.actor_params, next_b.actor_params)
  obs = jnp.ones((3,))
  chex.assert_trees_all_equal(iql.act(next_a, obs, next_a.rng), iql.act(next_b, obs, next_b.rng))
  with pytest.raises(CheckpointError, match='expectile'):
    manager.restore(iql.init(jax.random.key(0), 3, 2, iql.Config(hidden_dims=(8, 8),
                                                                 expectile=0.9)))
