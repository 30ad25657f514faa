"""End to end: `train_and_evaluate` with tiny budgets, resuming, interrupts and bad input."""

import dataclasses
import glob
import logging
import os
import signal

from absl import flags
import jax
import numpy as np
import pytest

from gold_jax.stages import distill
from gold_jax import configs, envs, jsrl
from gold_jax import launch
from gold_jax import logger as logger_lib
from gold_jax import policies
from gold_jax.agents import bc, dt, lagrange
from gold_jax.checkpoints import CheckpointManager
from gold_jax.data.replay import GUIDE, STUDENT, ReplayBuffer
from gold_jax.loop import GuidedLoop, LoopConfig

EPISODE = 40  # Short episodes keep every run to a few seconds.
TINY = distill.Config(
    task='Car-Circle', guide='none', total_steps=240, num_envs=1,
    schedule=jsrl.ScheduleConfig(steps=(30, 10, 0), stage_steps=100, prob_T=150),
    loop=LoopConfig(utd=None, train_every=20, batch_size=16, learning_starts=40),
    eval_every=120, eval_episodes=2, hidden_dims=(16, 16), max_episode_steps=EPISODE,
    progress=False)
DIMS = {'Car-Circle': (8, 2), 'Point-Goal': (60, 2)}


def save_guide(directory, algo, task, obs_dim, act_dim):
  """A randomly initialised tiny guide in the layout `policies.load_guide` reads."""
  key = jax.random.PRNGKey(0)
  if algo == 'dt':
    config = dt.Config(embed_dim=16, num_layers=1, mlp_dim=32, context_len=4,
                       max_timestep=EPISODE + 1)
    state = policies.init_state(dt, key, obs_dim, act_dim, config)
  else:
    state = policies.init_state(bc, key, obs_dim, act_dim, bc.Config(hidden_dims=(16, 16)))
  metadata = {'algo': algo, 'task': task, 'obs_dim': obs_dim, 'act_dim': act_dim}
  if algo == 'dt':
    metadata['target_return'] = 20.0
  with CheckpointManager(str(directory)) as manager:
    manager.save(7, state, extra=metadata)
  return str(directory), state


@pytest.fixture(scope='module')
def saved_guides(tmp_path_factory):
  root = tmp_path_factory.mktemp('guides')
  needed = (('dt', 'Car-Circle'), ('bc', 'Car-Circle'), ('dt', 'Point-Goal'))
  return {(algo, task): save_guide(root / f'{algo}_{task}', algo, task, *DIMS[task])
          for algo, task in needed}


@pytest.fixture(scope='module')
def guides(saved_guides):
  """Guide checkpoint directories by (algo, task)."""
  return {key: directory for key, (directory, _) in saved_guides.items()}


@pytest.fixture(scope='module')
def guide_states(saved_guides):
  return {key: state for key, (_, state) in saved_guides.items()}


def test_load_guide_round_trip(guides, guide_states):
  guide = policies.load_guide(guides[('bc', 'Car-Circle')])
  assert isinstance(guide, policies.MLPPolicy)
  guide.reset(3)
  obs = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
  saved = guide_states[('bc', 'Car-Circle')]
  np.testing.assert_array_equal(guide.act(obs), np.asarray(bc.act(saved, obs)))
  # init_state is module.init up to float rounding.
  eager = bc.init(jax.random.PRNGKey(0), 8, 2, bc.Config(hidden_dims=(16, 16)))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               eager.params, saved.params)
  dt_guide = policies.load_guide(guides[('dt', 'Car-Circle')], target_return=5.0)
  assert isinstance(dt_guide, policies.DTPolicy) and dt_guide.target_return == 5.0
  dt_guide.reset(3)
  action = dt_guide.act(obs)
  assert action.shape == (3, 2) and np.all(np.abs(action) <= 1)
  dt_guide.observe(action, np.ones(3), np.zeros(3))
  dt_guide.restart(np.array([True, False, False]))
  np.testing.assert_array_equal(np.asarray(dt_guide.ctx.timestep), [0, 1, 1])


def _rows(workdir):
  return logger_lib.read_csv(os.path.join(workdir, 'metrics.csv'))


@pytest.mark.parametrize('task, backbone, guide, schedule', [
    ('Car-Circle', 'iql', 'bc', 'horizon'),
    ('Car-Circle', 'iql', 'dt', 'auto'),
    ('Car-Circle', 'iql', 'none', 'horizon'),
    ('Point-Goal', 'cvpo', 'dt', 'prob'),
])
def test_train_and_evaluate(tmp_path, guides, task, backbone, guide, schedule):
  config = configs.replace(
      TINY, task=task, backbone=backbone, guide=guide, guide_ckpt=guides.get((guide, task), ''),
      schedule=dict(kind=schedule, auto_window=1, auto_tolerance=1.0))
  workdir = str(tmp_path / 'run')
  result = distill.train_and_evaluate(config, workdir)
  assert result['training/env_steps'] == 240 and not result['interrupted']
  for name in ('reward_mean', 'reward_std', 'cost_mean', 'cost_std', 'episode_length'):
    assert np.isfinite(result[f'evaluation/{name}'])
  assert result['evaluation/episode_length'] == EPISODE
  rows = _rows(workdir)
  np.testing.assert_array_equal(rows['step'], [0, 120, 240])
  assert np.all(np.isfinite(rows['evaluation/reward_mean']))
  assert np.isfinite(rows['training/student_share'][-1])
  assert rows['training/num_updates'][-1] == 200  # Updates ran (utd 1 from step 40).
  loss = 'loss/critic' if backbone == 'iql' else 'loss/critic_r'
  assert np.isfinite(rows[loss][-1])
  buffer = ReplayBuffer.load(os.path.join(workdir, 'checkpoints', 'replay_240.npz'))
  assert len(buffer) == 240
  sources = buffer.sources()
  if guide == 'none':
    assert np.all(sources == STUDENT)
    assert rows['training/guide_share'][-1] == 0.0
    np.testing.assert_array_equal(rows['training/horizon'], 0.0)
  else:
    # The guide took the first steps of the run; the student acts later on.
    assert sources[0] == GUIDE and np.any(sources == STUDENT)
    assert np.isfinite(rows['guide/reward_mean'][0])
    assert rows['training/guide_share'][1] > rows['training/guide_share'][2]
  if schedule == 'horizon' and guide != 'none':
    # h = 30 for steps < 100, 10 until 200, then 0: episodes of 40 steps start with the guide.
    obs_steps = np.arange(240) % EPISODE
    stage_h = np.select([np.arange(240) < 100, np.arange(240) < 200], [30, 10], 0)
    np.testing.assert_array_equal(sources, np.where(obs_steps < stage_h, GUIDE, STUDENT))
    np.testing.assert_array_equal(rows['training/horizon'], [30, 10, 0])
  if schedule == 'auto':
    # Tolerance 1 and one evaluation per window: each evaluation advances a stage.
    np.testing.assert_array_equal(rows['training/horizon'], [30, 10, 0])
    assert np.isfinite(rows['validation/mixed_reward_mean'][-1])
  if schedule == 'prob':
    np.testing.assert_allclose(rows['training/guide_prob'][1:], [0.9 * np.exp(-5 * 120 / 150),
                                                                 0.0])
  assert os.path.exists(os.path.join(workdir, 'config.json'))
  assert os.path.exists(os.path.join(workdir, 'plots', 'reward_cost.png'))
  assert os.listdir(os.path.join(workdir, 'tensorboard'))


def test_pipelined_run_with_a_dt_guide(tmp_path, guides):
  config = configs.replace(TINY, guide='dt', guide_ckpt=guides[('dt', 'Car-Circle')],
                           num_envs=2, loop=dict(pipeline='process'))
  workdir = str(tmp_path / 'run')
  result = distill.train_and_evaluate(config, workdir)
  assert result['training/env_steps'] == 240 and not result['interrupted']
  sources = ReplayBuffer.load(os.path.join(workdir, 'checkpoints', 'replay_240.npz')).sources()
  per_env = sources.reshape(120, 2)  # Rows of a step: copy 0, then copy 1.
  assert np.all(per_env[:30] == GUIDE) and np.all(per_env[-20:] == STUDENT)
  rows = _rows(workdir)
  assert rows['training/guide_share'][1] > rows['training/guide_share'][2]
  with pytest.raises(ValueError, match='even number of envs'):
    distill.validate(configs.replace(config, num_envs=3, loop=dict(train_every=21)))


@pytest.mark.parametrize('rule', ['lagrange', 'pid'])
def test_adapted_lambda_follows_the_students_episode_cost(tmp_path, rule):
  config = configs.replace(TINY, guide='none', multiplier=dict(rule=rule, value=0.5))
  assert distill.learner_config(config, envs.get_spec('Car-Circle')).multiplier.rule == rule
  distill.train_and_evaluate(config, str(tmp_path))
  rows = _rows(str(tmp_path))
  assert np.all(np.isfinite(rows['training/student_episode_cost'][1:]))
  assert np.all(np.isfinite(rows['training/lambda'][1:]))
  assert rows['training/lambda'][-1] != 0.5  # λ moved from its initial value.


class Killed(Exception):
  """Stands in for the process being killed."""


def _kill_at(monkeypatch, step, error=Killed):
  collect = GuidedLoop.collect_step

  def collect_then_die(self):
    if self.step >= step:
      raise error()
    collect(self)

  monkeypatch.setattr(GuidedLoop, 'collect_step', collect_then_die)


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, guides, monkeypatch):
  config = dataclasses.replace(TINY, guide='bc', guide_ckpt=guides[('bc', 'Car-Circle')])
  reference = str(tmp_path / 'reference')
  # Other tests in this process may have compiled other configurations: count from here.
  act_fn, update_fn = policies._split_and_act(distill.iql, False), distill.iql.update_n
  act_fn.clear_cache()
  update_fn.clear_cache()
  distill.train_and_evaluate(config, reference)

  workdir = str(tmp_path / 'killed')
  with monkeypatch.context() as patch:
    _kill_at(patch, 170)
    with pytest.raises(Killed):
      distill.train_and_evaluate(config, workdir)
  assert CheckpointManager(os.path.join(workdir, 'checkpoints')).latest_step() == 120
  np.testing.assert_array_equal(_rows(workdir)['step'], [0, 120])
  # Up to the checkpoint the run is the uninterrupted one, bit for bit.
  spec = dataclasses.replace(distill.envs.get_spec('Car-Circle'), max_episode_steps=EPISODE)
  template = distill.init_learner(config, spec, 8, 2)
  saved = [CheckpointManager(os.path.join(d, 'checkpoints')).restore(template, 120)
           for d in (reference, workdir)]
  jax.tree.map(np.testing.assert_array_equal, *saved)

  result = distill.train_and_evaluate(config, workdir)  # The same command again.
  assert result['training/env_steps'] == 240
  rows, expected = _rows(workdir), _rows(reference)
  np.testing.assert_array_equal(rows['step'], [0, 120, 240])  # No lost or repeated rows.
  for key in ('evaluation/reward_mean', 'training/horizon'):
    np.testing.assert_array_equal(rows[key][:2], expected[key][:2])
  np.testing.assert_array_equal(rows['training/horizon'], expected['training/horizon'])
  buffers = [ReplayBuffer.load(os.path.join(d, 'checkpoints', 'replay_240.npz'))
             for d in (reference, workdir)]
  assert len(buffers[0]) == len(buffers[1]) == 240
  first = [b.to_state_dict() for b in buffers]
  np.testing.assert_array_equal(first[0]['obs'][:120], first[1]['obs'][:120])
  np.testing.assert_array_equal(buffers[0].sources(), buffers[1].sources())
  final = CheckpointManager(os.path.join(workdir, 'checkpoints'))
  assert final.latest_step() == 240
  assert int(final.restore(template).step) == 240 - TINY.loop.learning_starts  # utd 1.
  # Acting and updating compiled once for the three runs, resumed state included.
  assert act_fn._cache_size() == 1
  assert update_fn._cache_size() == 1


def test_corrupt_newest_checkpoint_resumes_from_the_previous_one(tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  distill.train_and_evaluate(TINY, workdir)
  checkpoints = os.path.join(workdir, 'checkpoints')
  assert CheckpointManager(checkpoints).all_steps() == [120, 240]
  for name in glob.glob(os.path.join(checkpoints, '240', 'state', '**', 'd', '*'),
                        recursive=True):
    with open(name, 'r+b') as f:
      f.truncate(os.path.getsize(name) // 2)
  with caplog.at_level(logging.WARNING):
    result = distill.train_and_evaluate(TINY, workdir)  # The same command again.
  assert any('skipping damaged checkpoint' in r.getMessage() and '240' in r.getMessage()
             for r in caplog.records)
  # Resumed at 120 and ran again to 240: no metric row lost or repeated, the buffer complete.
  assert result['training/env_steps'] == 240 and not result['interrupted']
  np.testing.assert_array_equal(_rows(workdir)['step'], [0, 120, 240])
  assert len(ReplayBuffer.load(os.path.join(checkpoints, 'replay_240.npz'))) == 240
  assert CheckpointManager(checkpoints).all_steps() == [120, 240]
  assert os.path.isdir(os.path.join(checkpoints, 'corrupt-240'))  # Kept for inspection.


def test_ctrl_c_saves_a_checkpoint_and_returns(tmp_path, monkeypatch):
  workdir = str(tmp_path / 'run')
  collect = GuidedLoop.collect_step

  def collect_and_press_ctrl_c(self):
    collect(self)
    if self.step == 150:
      os.kill(os.getpid(), signal.SIGINT)

  before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs in the background.
  with monkeypatch.context() as patch:
    patch.setattr(GuidedLoop, 'collect_step', collect_and_press_ctrl_c)
    result = distill.train_and_evaluate(TINY, workdir)
  # The loop stopped at the next step boundary and saved it.
  assert result['interrupted'] and result['training/env_steps'] == 150
  assert CheckpointManager(os.path.join(workdir, 'checkpoints')).latest_step() == 150
  assert signal.getsignal(signal.SIGINT) is before  # Handler restored.
  with monkeypatch.context() as patch:  # A KeyboardInterrupt raised between steps.
    _kill_at(patch, 200, KeyboardInterrupt)
    result = distill.train_and_evaluate(TINY, workdir)
  assert result['interrupted'] and result['training/env_steps'] == 200
  result = distill.train_and_evaluate(TINY, workdir)
  assert result['training/env_steps'] == 240 and not result['interrupted']
  np.testing.assert_array_equal(_rows(workdir)['step'], [0, 120, 240])


def test_bad_configs_fail_before_any_rollout(tmp_path, guides, monkeypatch):
  _kill_at(monkeypatch, 0, AssertionError)  # Any env step would fail the test.
  bad = [
      (dict(schedule=dict(steps=(10, -1, 0))), '>= 0'),
      (dict(schedule=dict(steps=())), 'empty'),
      (dict(loop=dict(utd=0.0)), 'utd'),
      (dict(multiplier=dict(rule='dual')), 'lambda rule'),
      (dict(guide='dt'), 'guide_ckpt'),
      (dict(guide='dt', guide_ckpt=guides[('dt', 'Point-Goal')]), 'obs_dim=60'),
      (dict(guide='dt', guide_ckpt=guides[('bc', 'Car-Circle')]), "'bc' guide"),
      (dict(guide='bc', guide_ckpt=str(tmp_path / 'missing')), 'does not exist'),
  ]
  for i, (kwargs, match) in enumerate(bad):
    config = configs.replace(TINY, **kwargs)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
      distill.train_and_evaluate(config, str(tmp_path / f'run{i}'))
  # A resumed run with a different config is refused.
  launch.check_same_config(str(tmp_path), TINY, distill._RESUMABLE)
  with pytest.raises(ValueError, match='loop.batch_size: 16 -> 8'):
    launch.check_same_config(str(tmp_path), configs.replace(TINY, loop=dict(batch_size=8)),
                             distill._RESUMABLE)


def test_flags_parse_into_config():
  from experiments import distill as launcher  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  launcher.define_flags(fv)
  fv(['distill', '--task=Point-Goal', '--guide=none', '--schedule.steps=50,20,0',
      '--loop.utd=2', '--backbone=cvpo', '--multiplier.rule=pid', '--workdir=/tmp/x'])
  config = launcher.config_from_flags(fv)
  assert (config.task, config.schedule.steps, config.loop.utd, config.backbone) == (
      'Point-Goal', (50, 20, 0), 2.0, 'cvpo')
  assert config.multiplier == lagrange.Config(rule='pid', value=1.0)  # Over distill's default.
  assert config.loop.batch_size == 256 and config.schedule.stage_steps == 40_000
  assert config.hidden_dims == (256, 256)  # The student is always 2x256 from the command line.
  for argv, match in ((['--loop.utd=0'], 'utd'), (['--schedule.steps=5,x'], 'integers'),
                      (['--schedule.steps=5,-2'], '>= 0')):
    fv = flags.FlagValues()
    launcher.define_flags(fv)
    fv(['distill', '--guide=none', *argv])
    with pytest.raises(ValueError, match=match):
      launcher.config_from_flags(fv)
