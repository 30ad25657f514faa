"""gold_jax.stages.evaluate (and its launcher): any checkpoint loads, evaluates, plots, exports; errors are clear."""

import json
import os

import jax
import numpy as np
import pytest

from gold_jax.stages import evaluate
from gold_jax import envs
from gold_jax.agents import bc, iql, sac
from gold_jax.checkpoints import CheckpointManager
from gold_jax.policies import RandomPolicy, load_policy, restore_learner

LENGTH = 15  # Episode length of the tests.


def _init(module, config, obs_dim=8, act_dim=2, **kwargs):
  return jax.jit(module.init, static_argnums=(1, 2, 3))(
      jax.random.PRNGKey(0), obs_dim, act_dim, config, **kwargs)


@pytest.fixture(scope='module')
def sac_run(tmp_path_factory):
  """An expert run as collect.py writes it: checkpoints/ with the task in the metadata."""
  run_dir = str(tmp_path_factory.mktemp('expert'))
  state = _init(sac, sac.Config(hidden_dims=(8, 8), cost_limit=10.0))
  with CheckpointManager(os.path.join(run_dir, 'checkpoints')) as manager:
    manager.save(5, state, extra={'algo': 'sac', 'task': 'Car-Circle', 'obs_dim': 8,
                                  'act_dim': 2})
  return run_dir, state


def test_sac_checkpoint_evaluates_plots_and_exports(sac_run, tmp_path, capsys):
  run_dir, state = sac_run
  config = evaluate.Config(ckpt=run_dir, episodes=3, num_envs=2, plot=True, plot_episodes=1,
                           video=True, video_steps=3, export=str(tmp_path / 'expert.npz'),
                           max_episode_steps=LENGTH, seed=4)
  result = evaluate.run(config, str(tmp_path / 'out'))
  out = capsys.readouterr().out
  assert 'sac on Car-Circle (3 episodes): reward' in out
  assert result['task'] == 'Car-Circle' and result['algo'] == 'sac'
  np.testing.assert_allclose(result['reward_mean'], np.mean(result['episode_returns']))
  np.testing.assert_allclose(result['cost_std'], np.std(result['episode_costs']))
  assert result['length_mean'] == LENGTH
  with open(result['plot'], 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  # The video is written, or skipped with the reason printed.
  assert ('video' in result and os.path.getsize(result['video']) > 0) or (
      'video skipped: rendering is unavailable' in out)
  assert result['export/max_abs_error'] < 1e-5
  assert result['export/numpy_latency_ms'] > 0
  saved = json.load(open(os.path.join(str(tmp_path / 'out'), 'evaluation.json')))
  assert saved['reward_mean'] == result['reward_mean']

  # The same seed gives the same episodes.
  again = evaluate.run(evaluate.Config(ckpt=run_dir, episodes=3, num_envs=2, seed=4,
                                       max_episode_steps=LENGTH), str(tmp_path / 'again'))
  np.testing.assert_allclose(again['episode_returns'], result['episode_returns'], rtol=1e-5)


def test_restore_learner_round_trip(sac_run):
  run_dir, state = sac_run
  module, restored, meta = restore_learner(run_dir)
  assert module is sac and meta['learner'] == 'sac' and meta['step'] == 5
  assert restored.config == state.config  # Nested configs are rebuilt from JSON.
  obs = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
  key = jax.random.PRNGKey(0)
  np.testing.assert_array_equal(sac.act(restored, obs, key, True), sac.act(state, obs, key, True))


def test_student_task_comes_from_run_config(tmp_path):
  """distill.py records the task in the run's config.json, not in the checkpoint."""
  run_dir = str(tmp_path / 'student')
  state = _init(iql, iql.Config(hidden_dims=(8, 8)))
  with CheckpointManager(os.path.join(run_dir, 'checkpoints')) as manager:
    manager.save(10, state, extra={'loop': {}})
  with open(os.path.join(run_dir, 'config.json'), 'w') as f:
    json.dump({'task': 'Car-Circle', 'backbone': 'iql'}, f)
  policy, info = load_policy(run_dir)
  assert info['kind'] == 'learner' and info['algo'] == 'iql' and info['task'] == 'Car-Circle'
  obs = np.zeros((2, 8), np.float32)
  np.testing.assert_array_equal(policy.act(obs),
                                iql.act(state, obs, jax.random.PRNGKey(0), deterministic=True))


def test_guide_checkpoint_and_wrong_task(tmp_path):
  """A BC guide in the layout of train_guide.py; a task with other sizes is refused."""
  run_dir = str(tmp_path / 'bc')
  state = _init(bc, bc.Config(hidden_dims=(8,)))
  with CheckpointManager(os.path.join(run_dir, 'checkpoints')) as manager:
    manager.save(1, state, extra={'algo': 'bc', 'task': 'Car-Circle', 'obs_dim': 8,
                                  'act_dim': 2})
  policy, info = load_policy(run_dir)
  assert info['kind'] == 'guide' and info['algo'] == 'bc'
  with pytest.raises(ValueError, match="trained on 'Car-Circle'.*'Point-Goal'"):
    evaluate.run(evaluate.Config(ckpt=run_dir, task='Point-Goal', episodes=1,
                                 max_episode_steps=5), str(tmp_path / 'out'))
  with pytest.raises(FileNotFoundError):
    load_policy(str(tmp_path / 'missing'))


def test_positions_and_geometry_of_car_circle():
  with envs.make('Car-Circle', seed=0) as env:
    env.reset(seed=0)
    start = env.agent_position()
    assert start is not None and start.shape == (2,)
    assert 2.0 <= np.linalg.norm(start) <= 4.0  # Circle starts 2 to 4 from the origin.
    episode = evaluate.play(RandomPolicy(2, seed=0), env, seed=0, max_steps=5)
    geometry = env.geometry()
  assert episode['positions'].shape == (6, 2)
  assert geometry == {'radius': 7.0, 'x_lim': 6.0}


def test_safety_gym_scene_and_goals_are_plotted(tmp_path):
  with envs.make('Point-Goal', seed=0) as env:
    env.reset(seed=0)
    layout = env.scene()
    episode = evaluate.play(RandomPolicy(2, seed=0), env, seed=0, max_steps=5)
  assert len(layout['hazard']) == 8 and all(r == 0.2 for _, _, r in layout['hazard'])
  assert len(layout['goal']) == 3 and len(layout['vase']) == 1
  assert episode['goals'][0] == episode['scene']['goal']
  path = evaluate.plot_trajectories([episode, episode], {}, str(tmp_path / 'traj.png'), 'test')
  assert os.path.getsize(path) > 0
  with envs.make('Car-Circle', seed=0) as env:
    assert env.scene() == {}  # Not safety-gymnasium: no layout.
