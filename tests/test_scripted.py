"""gold_jax.scripted, gold_jax.scripted_push: the lidar controllers that stand in for experts."""

import os

from absl import app
import chex
import numpy as np
import pytest

from experiments import scripted_episodes
from gold_jax import envs, errors, presets, protocol, scripted, scripted_push
from gold_jax.stages import collect
from launcher_checks import parsed_flags


def _episode(env, act, seed):
  obs, _ = env.reset(seed=seed)
  reward = cost = 0.0
  while True:
    obs, r, c, terminated, truncated, _ = env.step(act(obs[None])[0])
    reward, cost = reward + r, cost + c
    if terminated or truncated:
      return reward, cost


def test_goal_lidar_decodes_to_the_goals_true_position():
  env = envs.make('Point-Goal')
  try:
    sensors = scripted.layout(env)
    task = env.env.unwrapped.task
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=3)
    checked = 0
    for _ in range(200):
      ego = task._ego_xy(task.goal.pos[:2])  # pylint: disable=protected-access
      found = scripted.locate(obs[sensors['goal_lidar']])
      if np.hypot(*ego) < scripted.LIDAR_RANGE:
        angle, distance = found
        assert np.hypot(*ego) == pytest.approx(distance, abs=1e-4)
        assert np.angle(np.exp(1j * (angle - np.arctan2(ego[1], ego[0])))) == pytest.approx(
            0.0, abs=1e-4)
        checked += 1
      obs, *_ = env.step(rng.uniform(-1, 1, 2))
  finally:
    env.close()
  assert checked > 100


@pytest.mark.parametrize('task', scripted.PRESET_TASKS)
def test_scripted_expert_reaches_goals_within_the_budget(task):
  # Training-range reset seeds (gold_jax.protocol): not the episodes any table reports.
  env = envs.make(task)
  act = scripted.policy(task)
  rng = np.random.default_rng(0)
  try:
    actions = act(np.zeros((4, env.obs_dim), np.float32))
    chex.assert_shape(actions, (4, 2))
    chex.assert_type(actions, np.float32)
    expert = np.array([_episode(env, act, 1000 + i) for i in range(3)])
    randomly = np.array([_episode(env, lambda o: rng.uniform(-1, 1, (1, 2)), 1000 + i)
                         for i in range(3)])
  finally:
    env.close()
  # On these episodes: about 13 goal-reward points on the Goal tasks, 2 to 7 on the others
  # (Point-Button's expert keeps far from the gremlins; Point pushes a box slowly).
  margin = {'Goal': 5.0, 'Button': 2.0, 'Push': 1.5}[task.split('-')[1]]
  assert expert[:, 0].mean() > randomly[:, 0].mean() + margin
  if task in scripted.SAFE_TASKS:
    assert expert[:, 1].mean() <= envs.get_spec(task).cost_threshold


def test_tasks_without_a_scripted_expert_are_refused_by_name():
  with pytest.raises(errors.TaskError, match='no scripted expert for Car-Circle.*Point-Goal'):
    scripted.policy('Car-Circle')
  with pytest.raises(ValueError, match='--expert must be one of'):
    collect.validate(collect.Config(task='Point-Goal', expert='pid'))
  with pytest.raises(ValueError, match='takes no --expert_policy'):
    collect.validate(collect.Config(task='Point-Goal', expert='scripted',
                                    expert_policy='expert.npz'))


def test_collect_records_the_scripted_expert_without_training(tmp_path):
  config = collect.Config(task='Point-Goal', expert='scripted', episodes=2, final_episodes=2,
                          eval_episodes=2, max_episode_steps=30, progress=False,
                          tensorboard=False)
  summary = collect.run(config, str(tmp_path))
  assert summary['expert_policy'] == 'scripted'
  assert summary['num_transitions'] == 60 and summary['expert_eval_episodes'] == 2
  assert os.path.exists(summary['dataset'])
  assert not os.path.exists(os.path.join(str(tmp_path), 'best_expert'))  # Nothing trained.


def test_laptop_preset_plays_the_scripted_expert_only_where_one_exists():
  assert presets.stages('laptop', 'Point-Goal')['collect']['expert'] == 'scripted'
  assert presets.stages('laptop', 'Car-Circle')['collect']['expert'] == 'sac'
  assert presets.stages('laptop', 'Car-Goal')['collect']['expert'] == 'scripted'
  assert presets.stages('laptop', 'Point-Button')['collect']['expert'] == 'scripted'
  assert presets.stages('laptop', 'Car-Button')['collect']['expert'] == 'scripted'


def test_button_tasks_press_the_goal_button_not_the_others():
  # The goal button, nearest in its bins, is no obstacle; a nearer wrong button in the same
  # direction still is.
  env = envs.make('Point-Button')
  try:
    controller = scripted.policy('Point-Button')
    sensors = controller.sensors
    obs = np.zeros(env.obs_dim, np.float32)
    obs[sensors['goal_lidar']][[2, 3]] = [0.5, 0.25]
    obs[sensors['buttons_lidar']][[2, 3]] = [0.5, 0.25]
    points, _ = controller.obstacles(obs)
    assert len(points) == 0
    obs[sensors['buttons_lidar']][[2, 3]] = [0.8, 0.4]  # A wrong button in front of the goal.
    points, _ = controller.obstacles(obs)
    assert len(points) == 2
  finally:
    env.close()


def test_button_expert_backs_off_the_pressed_button_and_seeks_an_unseen_goal():
  env = envs.make('Point-Button')
  try:
    controller = scripted.policy('Point-Button')
    sensors = controller.sensors
    obs = np.zeros(env.obs_dim, np.float32)
    obs[sensors['goal_lidar']][[0, 1]] = [0.9, 0.05]  # The goal button just ahead.
    obs[sensors['buttons_lidar']][[0, 1]] = [0.9, 0.05]
    assert controller.act(obs)[0] > 0  # Point's thrust: towards it.
    obs[sensors['buttons_lidar']] = 0.0  # Pressed: the env blanks the buttons while resampling.
    assert controller.resampling(obs)
    assert controller.act(obs)[0] < 0  # Backs off the pressed button.
    obs[sensors['goal_lidar']] = 0.0  # The goal out of range; buttons to the left (bin 4).
    obs[sensors['buttons_lidar']][[4, 5]] = [0.2, 0.1]
    assert not controller.resampling(obs)
    assert controller.act(obs)[1] > 0  # Point's turn rate: counter-clockwise, to the buttons.
  finally:
    env.close()


def test_push_hazard_lidar_decodes_to_the_hazards_true_positions():
  # A hazard aliases into the bins on both sides of its own; decoding peels those leaks off.
  env = envs.make('Point-Push')
  try:
    sensors = scripted.layout(env)
    task = env.env.unwrapped.task
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=1000)
    misses = []
    for _ in range(200):
      true = np.array([task._ego_xy(p[:2]) for p in task.hazards.pos])  # pylint: disable=protected-access
      seen = true[np.hypot(*true.T) < scripted.LIDAR_RANGE]
      points, radii = scripted_push.decode(obs[sensors['hazards_lidar']], 0.3)
      chex.assert_shape(radii, (len(points),))
      misses.extend(np.hypot(*(points - hazard).T).min() for hazard in seen)
      obs, *_ = env.step(rng.uniform(-1, 1, 2))
  finally:
    env.close()
  # Exact for a hazard alone in its bins; where two share bins, a point may be off (here by up
  # to 0.23 m), or a phantom added, but every hazard is found within its radius.
  assert np.median(misses) < 1e-3 and max(misses) < scripted_push.HAZARD_RADIUS


def test_episodes_split_the_cost_by_source_and_refuse_evaluation_seeds():
  rows = scripted.episodes('Point-Button', 1, 1000)
  assert rows[0]['seed'] == 1000 and rows[0]['goals'] >= 1
  assert {'cost_buttons', 'cost_gremlins', 'cost_hazards'} <= set(rows[0])
  assert rows[0]['cost'] <= sum(v for k, v in rows[0].items() if k.startswith('cost_'))
  with pytest.raises(ValueError, match='not for tuning'):
    scripted.episodes('Point-Button', 2, protocol.EVALUATION_BASE - 1)


def test_scripted_episodes_launcher_prints_the_means(capsys):
  argv = ['scripted_episodes', '--task=Car-Push', '--episodes=1', '--random']
  with parsed_flags(scripted_episodes.define_flags, argv):
    scripted_episodes.main(argv[:1])
  out = capsys.readouterr().out
  assert out.splitlines()[-1].startswith('mean ') and 'cost_hazards' in out
  for bad, words in ((['--task=Car-Circle'], 'no scripted expert for Car-Circle'),
                     (['--gains=reach=1'], "'reach=1' is not name=value"),
                     (['--gains=seek_buttons=2'], 'seek_buttons takes true or false')):
    argv = ['scripted_episodes'] + bad
    with parsed_flags(scripted_episodes.define_flags, argv):
      with pytest.raises(app.UsageError, match=words):
        scripted_episodes.main(argv[:1])
  gains = scripted_episodes.parse_gains(['gremlin_reach=0', 'seek_buttons=false'])
  assert gains.gremlin_reach == 0.0 and gains.seek_buttons is False and gains.margin == 0.2
  # Overrides act on the task's own gains.
  car = scripted_episodes.parse_gains(['kt=4'], scripted.gains_of('Car-Button'))
  assert car == scripted.Gains(margin=0.3, gremlin_reach=0.5, kt=4.0)
  assert scripted.policy('Car-Button').gains == scripted.TASK_GAINS['Car-Button']
  assert scripted.policy('Point-Button').gains == scripted.Gains()


def test_escape_drives_straight_away_from_a_near_obstacle():
  env = envs.make('Car-Button')
  try:
    sensors = scripted.layout(env)
    obs = np.zeros(env.obs_dim, np.float32)
    obs[sensors['goal_lidar']][[4, 5]] = [0.5, 0.25]  # The goal to the left, 1.5 m off.
    obs[sensors['buttons_lidar']][[4, 5]] = [0.5, 0.25]
    # A gremlin just ahead of the Car, which drives along its -y axis (bin 12: -90 degrees).
    obs[sensors['gremlins_lidar']][[12, 13]] = [1 - 0.25 / 3, 0.0]
    robot = scripted.ROBOTS['Car']
    near = scripted.GoalController(sensors, robot, scripted.Gains(escape=0.2))
    np.testing.assert_allclose(near.act(obs), robot.actuate(-1.0, 0.0))  # Straight back.
    steering = scripted.GoalController(sensors, robot, scripted.Gains())
    assert not np.allclose(steering.act(obs), robot.actuate(-1.0, 0.0))
  finally:
    env.close()
