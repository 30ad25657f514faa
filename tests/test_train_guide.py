"""gold_jax.stages.train_guide: DT and BC guides trained, checkpointed for load_guide, evaluated."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gold_jax.stages import train_guide
from gold_jax.agents import bc
from gold_jax.checkpoints import CheckpointManager
from gold_jax.data.trajectories import DatasetError, TrajectoryDataset
from gold_jax.policies import DTPolicy, MLPPolicy, load_guide, read_guide_metadata

OBS_DIM, ACT_DIM, LENGTH = 8, 2, 20  # Car-Circle sizes; episodes cut to 20 steps.
WEIGHTS = np.random.default_rng(0).normal(size=(OBS_DIM, ACT_DIM)).astype(np.float32) / 3


def _expert(obs):
  """The demonstrator: a fixed smooth function of the observation."""
  return np.tanh(obs @ WEIGHTS)


def _dataset(path, task='Car-Circle', episodes=6):
  rng = np.random.default_rng(1)
  eps = []
  for i in range(episodes):
    obs = rng.normal(size=(LENGTH + 1, OBS_DIM)).astype(np.float32)
    eps.append({'observations': obs, 'actions': _expert(obs[:-1]),
                'rewards': np.full(LENGTH, i + 1.0, np.float32),  # Returns 20, 40, ..., 120.
                'costs': np.zeros(LENGTH, np.float32)})
  TrajectoryDataset.from_episodes(eps, task=task).to_file(path)
  return path


def _config(dataset, **overrides):
  values = dict(dataset=dataset, steps=300, updates_per_call=50, hidden_dims=(32, 32),
                embed_dim=16, num_layers=1, context_len=4, warmup_steps=10, eval_episodes=2,
                log_every=100, checkpoint_every=100, max_episode_steps=LENGTH, progress=False,
                tensorboard=False)
  values.update(overrides)
  return train_guide.Config(**values)


@pytest.fixture(scope='module')
def data_path(tmp_path_factory):
  return _dataset(str(tmp_path_factory.mktemp('data') / 'demos.hdf5'))


def test_bc_guide_learns_checkpoints_and_evaluates(data_path, tmp_path, capsys):
  workdir = str(tmp_path / 'bc')
  summary = train_guide.run(_config(data_path, algo='bc', learning_rate=3e-3), workdir)
  assert 'bc guide on Car-Circle: reward' in capsys.readouterr().out
  assert summary['updates'] == 300
  assert summary['evaluation/episode_length'] == LENGTH
  losses = [float(row.split(',')[1]) for row in
            open(os.path.join(workdir, 'metrics.csv')).read().splitlines()[1:4]]
  assert losses[-1] < 0.3 * losses[0]  # Regression onto the demonstrator's actions.

  meta = read_guide_metadata(summary['checkpoint'])
  assert (meta['algo'], meta['task'], meta['obs_dim'], meta['act_dim']) == (
      'bc', 'Car-Circle', OBS_DIM, ACT_DIM)
  guide = load_guide(summary['checkpoint'])
  assert isinstance(guide, MLPPolicy) and guide.module is bc
  obs = np.random.default_rng(2).normal(size=(64, OBS_DIM)).astype(np.float32)
  error = np.abs(guide.act(obs) - _expert(obs)).mean()
  assert error < 0.5 * np.abs(_expert(obs)).mean()  # Much closer than acting with zeros.

  # Rerunning with a larger budget resumes from update 300.
  again = train_guide.run(_config(data_path, algo='bc', learning_rate=3e-3, steps=400), workdir)
  assert again['updates'] == 400
  with CheckpointManager(summary['checkpoint']) as manager:
    assert manager.all_steps() == [300, 400]


def test_dt_guide_metadata_target_return_and_round_trip(data_path, tmp_path):
  workdir = str(tmp_path / 'dt')
  summary = train_guide.run(_config(data_path, algo='dt', steps=100, log_every=50,
                                    learning_rate=1e-3, target_quantile=0.5,
                                    matmul_dtype='bfloat16'),  # Mixed precision, end to end.
                            workdir)
  returns = 20.0 * np.arange(1, 7)
  assert summary['target_return'] == pytest.approx(np.quantile(returns, 0.5))  # 70.
  meta = read_guide_metadata(summary['checkpoint'])
  assert meta['algo'] == 'dt' and meta['target_return'] == pytest.approx(70.0)
  assert meta['config']['context_len'] == 4 and meta['config']['max_timestep'] >= LENGTH
  guide = load_guide(summary['checkpoint'])
  assert isinstance(guide, DTPolicy) and guide.target_return == pytest.approx(70.0)
  assert meta['config']['matmul_dtype'] == guide.state.config.matmul_dtype == 'bfloat16'
  assert meta['config']['dropout_impl'] == guide.state.config.dropout_impl == 'hash'
  rows = open(os.path.join(workdir, 'metrics.csv')).read().splitlines()
  assert 'loss/action' in rows[0] and 'evaluation/reward_mean' in rows[0]
  losses = [float(r.split(',')[1]) for r in rows[1:] if r.split(',')[1]]
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  assert json.load(open(os.path.join(workdir, 'config.json')))['algo'] == 'dt'


def test_dataset_of_another_task_is_refused(tmp_path):
  path = _dataset(str(tmp_path / 'gather.npz'), task='Car-Gather', episodes=2)
  with pytest.raises(DatasetError) as error:
    train_guide.run(_config(path, task='Car-Circle'), str(tmp_path / 'run'))
  message = str(error.value)
  assert "'Car-Gather'" in message and "'Car-Circle'" in message
  assert not os.path.exists(str(tmp_path / 'run' / 'checkpoints'))


def test_validation():
  with pytest.raises(ValueError, match='--algo'):
    train_guide.validate(_config('x.hdf5', algo='cql'))
  with pytest.raises(ValueError, match='--dataset'):
    train_guide.validate(_config(''))
  with pytest.raises(ValueError, match='target_quantile'):
    train_guide.validate(_config('x.hdf5', target_quantile=2.0))
  with pytest.raises(ValueError, match='--matmul_dtype'):
    train_guide.validate(_config('x.hdf5', matmul_dtype='float16'))
  with pytest.raises(ValueError, match='--dropout_impl'):
    train_guide.validate(_config('x.hdf5', dropout_impl='philox'))


def test_learner_config_sizes_dt_to_the_episode_length():
  config = train_guide.learner_config(_config('x', algo='dt', steps=100, warmup_steps=1000), 300)
  assert config.max_timestep == 300 and config.context_len == 4
  assert config.warmup_steps == 50  # Capped at half the updates.
  assert train_guide.learner_config(_config('x', algo='bc'), 300).hidden_dims == (32, 32)


DATA_PARALLEL_SCRIPT = '''
import sys
import experiments  # Applies gold_jax.runtime.configure_cpu: GOLD_JAX_CPU_DEVICES=2.
import jax
from gold_jax.stages import train_guide
from gold_jax.agents import dt

assert jax.local_device_count() == 2, jax.devices()
config = train_guide.Config(algo='dt', dataset=sys.argv[1], steps=40, updates_per_call=20,
                            embed_dim=16, num_layers=1, context_len=4, warmup_steps=5,
                            batch_size=8, eval_episodes=1, log_every=20, checkpoint_every=20,
                            max_episode_steps=20, progress=False, tensorboard=False)
assert train_guide.data_parallel_mesh(config, dt, 8).size == 2
assert train_guide.data_parallel_mesh(
    train_guide.Config(data_parallel=False), dt, 8) is None
try:
  train_guide.data_parallel_mesh(config, dt, 7)
  raise AssertionError('an odd batch was accepted')
except ValueError as e:
  assert '--nodata_parallel' in str(e), e
summary = train_guide.run(config, sys.argv[2])
print('TRAINED', summary['checkpoint'])
'''


def test_dt_trains_data_parallel_over_two_cpu_devices(data_path, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu', GOLD_JAX_CPU_DEVICES='2')
  env.pop('XLA_FLAGS', None)
  workdir = str(tmp_path / 'dp')
  result = subprocess.run([sys.executable, '-c', DATA_PARALLEL_SCRIPT, data_path, workdir],
                          env=env, capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 0, result.stdout + result.stderr
  assert 'TRAINED' in result.stdout
  guide = load_guide(os.path.join(workdir, 'checkpoints'))  # One device here.
  assert isinstance(guide, DTPolicy)
  guide.reset(2)
  assert guide.act(np.zeros((2, OBS_DIM), np.float32)).shape == (2, ACT_DIM)
  rows = open(os.path.join(workdir, 'metrics.csv')).read().splitlines()
  losses = [float(r.split(',')[1]) for r in rows[1:] if r.split(',')[1]]
  assert 'loss/action' in rows[0] and len(losses) == 2 and np.all(np.isfinite(losses))
