"""Tests for gold_jax.envs: the task table, the 6-tuple API on every simulator, cost signals,
action validation, seeding and the vectorised env."""

import importlib.util

import gymnasium
import numpy as np
import pytest

from gold_jax import envs
from gold_jax.envs import registry, vector
from gold_jax.envs.core import GymnasiumSafeEnv, TaskSpec, validate_action

# Seed per task for which the held-random policy below touches a hazard within
# `COST_STEP_CAP` steps (verified with the pinned simulator versions).
COST_SEEDS = {'Car-Circle': 10, 'Car-Gather': 0, 'Point-Goal': 0, 'Point-Button': 0,
              'Point-Push': 1, 'Car-Goal': 0, 'Car-Button': 4, 'Car-Push': 3}
COST_STEP_CAP = 300
HOLD = 20  # steps each random action is held, so the agent travels rather than jitters
GYM_TASKS = list(COST_SEEDS)


def _held_random_actions(seed, act_dim):
  rng = np.random.default_rng(seed)
  while True:
    action = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
    for _ in range(HOLD):
      yield action


def _check_step(env, result):
  obs, reward, cost, terminated, truncated, info = result
  assert obs.dtype == np.float32 and obs.shape == (env.obs_dim,)
  assert isinstance(reward, float) and isinstance(cost, float) and cost >= 0.0
  assert isinstance(terminated, bool) and isinstance(truncated, bool)
  assert isinstance(info, dict)
  assert ('success' in info) == env.spec.has_success
  if env.spec.has_success:
    assert isinstance(info['success'], bool)


def test_table_matches_the_paper():
  assert envs.list_tasks() == [
      'Car-Circle', 'Car-Gather', 'Point-Goal', 'Point-Button', 'Point-Push', 'Car-Goal',
      'Car-Button', 'Car-Push', 'MetaDrive-Waymo', 'MetaDrive-Safe']
  for spec in registry.TASKS.values():
    assert spec.max_episode_steps > 0 and spec.cost_threshold > 0
  assert registry.TASKS['Point-Goal'].sim_id == 'SafetyPointGoal1-v0'
  assert registry.TASKS['Car-Circle'].sim_id == 'SafetyCarCircle-v0'
  assert registry.TASKS['MetaDrive-Safe'].has_success
  assert not registry.TASKS['Car-Push'].has_success


@pytest.mark.parametrize('task', GYM_TASKS)
def test_task_steps_with_safe_api_and_costs(task):
  """6-tuple API, dtypes and shapes; a held-random episode with the verified seed costs > 0."""
  with envs.make(task, seed=COST_SEEDS[task]) as env:
    spec = registry.TASKS[task]
    assert env.spec == spec
    assert env.observation_space.shape == (env.obs_dim,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space == gymnasium.spaces.Box(-1, 1, (env.act_dim,), np.float32)
    obs, info = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (env.obs_dim,) and isinstance(info, dict)
    actions = _held_random_actions(COST_SEEDS[task], env.act_dim)
    total_cost = 0.0
    for _ in range(COST_STEP_CAP):
      result = env.step(next(actions))
      _check_step(env, result)
      total_cost += result[2]
      if total_cost > 0 or result[3] or result[4]:
        break
    assert total_cost > 0, f'{task}: no cost within {COST_STEP_CAP} steps'


def test_raw_simulator_ids_resolve():
  assert envs.get_spec('SafetyCarCircle-v0') is registry.TASKS['Car-Circle']
  assert envs.get_spec('SafetyPointGoal1-v0') is registry.TASKS['Point-Goal']
  with envs.make('SafetyPointGoal1-v0') as env:
    assert env.spec.name == 'Point-Goal'
    env.reset()
    _check_step(env, env.step(np.zeros(env.act_dim)))
  with envs.make('SafetyPointCircle1-v0') as env:  # not in the table: simulator's own length
    assert env.spec.max_episode_steps == 500 and env.spec.cost_threshold == 25.0
    env.reset()
    _check_step(env, env.step(np.zeros(env.act_dim)))


@pytest.mark.parametrize('task', ['Car-Hover', 'SafetyPointGoal9', 'metadrive', ''])
def test_unknown_task_lists_known_tasks(task):
  with pytest.raises(ValueError, match='unknown task.*Car-Circle.*MetaDrive-Safe'):
    envs.make(task)


@pytest.fixture(scope='module')
def point_goal():
  env = envs.make('Point-Goal', seed=0)
  yield env
  env.close()


@pytest.mark.parametrize('action, message', [
    (np.zeros(3), r'expected shape \(2,\), got \(3,\)'),
    (np.zeros((1, 2)), r'expected shape \(2,\), got \(1, 2\)'),
    (np.float32(0.5), r'expected shape \(2,\), got \(\)'),
    (np.array([0.0, np.nan]), 'NaN or inf'),
    (np.array([np.inf, 0.0]), 'NaN or inf'),
    (np.array(['a', 'b']), 'numeric'),
])
def test_bad_actions_raise_value_error(point_goal, action, message):
  point_goal.reset()
  with pytest.raises(ValueError, match=message):
    point_goal.step(action)
  _check_step(point_goal, point_goal.step([0.1, -0.1]))  # the env still works


def test_step_before_reset_is_an_error():
  with envs.make('Car-Circle') as env, pytest.raises(RuntimeError, match='reset'):
    env.step(np.zeros(env.act_dim))


class _BoxEnv(gymnasium.Env):
  """Records the actions it gets; action box [0, 4] x [-2, 2]; cost 1 on odd steps."""

  def __init__(self):
    self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float64)
    self.action_space = gymnasium.spaces.Box(np.array([0., -2.]), np.array([4., 2.]),
                                             dtype=np.float64)
    self.actions, self.seeds, self.t = [], [], 0

  def reset(self, *, seed=None, options=None):
    self.seeds.append(seed)
    self.t = 0
    return np.zeros(3), {}

  def step(self, action):
    self.actions.append(action)
    self.t += 1
    info = {'cost': float(self.t % 2), 'arrived': self.t == 3}
    return np.full(3, self.t, np.float64), 1.0, self.t == 3, False, info


def test_rescale_clip_time_limit_and_success():
  spec = TaskSpec('Box', 'box', 'fake', 2, 1.0, True)
  env = GymnasiumSafeEnv(_BoxEnv(), spec, seed=7, success_key='arrived')
  obs, info = env.reset()
  assert env.env.seeds == [7] and info == {'success': False} and obs.dtype == np.float32
  obs, reward, cost, terminated, truncated, info = env.step([-1.0, 5.0])
  np.testing.assert_allclose(env.env.actions[-1], [0.0, 2.0])  # clipped to 1, then rescaled
  assert env.env.actions[-1].dtype == np.float64
  assert (cost, terminated, truncated, info['success']) == (1.0, False, False, False)
  truncated = env.step([0.0, 0.0])[4]
  np.testing.assert_allclose(env.env.actions[-1], [2.0, 0.0])
  assert truncated  # the spec's episode limit is 2 steps
  with pytest.raises(RuntimeError, match='reset'):
    env.step([0.0, 0.0])
  env.reset(seed=3)
  assert env.env.seeds == [7, 3]
  env.spec = TaskSpec('Box', 'box', 'fake', 10, 1.0, True)
  results = [env.step([0.0, 0.0]) for _ in range(3)]
  assert [r[5]['success'] for r in results] == [False, False, True]
  assert results[-1][3] and not results[-1][4]


def test_validate_action_clips_and_casts():
  out = validate_action([2, -3.5], 2)
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, [1.0, -1.0])


def test_seeding_is_reproducible_and_private():
  """Same seed, same observations; bullet envs leave numpy's global random state alone."""
  np.random.seed(123)
  expected = np.random.get_state()[1].copy()
  first = envs.make('Car-Gather', seed=5)
  second = envs.make('Car-Gather', seed=5)
  np.testing.assert_array_equal(first.reset()[0], second.reset()[0])
  np.testing.assert_array_equal(first.reset(seed=9)[0], second.reset(seed=9)[0])
  assert not np.array_equal(first.reset(seed=1)[0], second.reset(seed=2)[0])
  np.testing.assert_array_equal(np.random.get_state()[1], expected)
  first.close()
  second.close()
  with envs.make('Point-Goal', seed=4) as a, envs.make('Point-Goal', seed=4) as b:
    np.testing.assert_array_equal(a.reset()[0], b.reset()[0])
    step_a, step_b = a.step([0.3, 0.2]), b.step([0.3, 0.2])
    np.testing.assert_array_equal(step_a[0], step_b[0])
    with pytest.raises(ValueError, match='non-negative'):
      a.reset(seed=-1)


@pytest.mark.parametrize('task', ['Car-Circle', 'Car-Gather'])
def test_bullet_reset_after_an_episode_equals_a_fresh_reset(task):
  """The last action's motor targets must not leak into the next episode's start."""
  with envs.make(task, seed=0) as used, envs.make(task, seed=0) as fresh:
    used.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(30):
      used.step(rng.uniform(-1, 1, used.act_dim))
    np.testing.assert_array_equal(used.reset(seed=3)[0], fresh.reset(seed=3)[0])


def test_fast_reset_keeps_physics_and_observations():
  """Worlds compiled without the skybox (no render_mode) step exactly like rendered ones."""
  with envs.make('Car-Goal', seed=1) as fast, \
      envs.make('Car-Goal', seed=1, render_mode='rgb_array') as full:
    np.testing.assert_array_equal(fast.reset()[0], full.reset()[0])
    textures = lambda env: env.env.unwrapped.task.world.model.ntex
    assert textures(fast) == textures(full) - 1
    for action in ([0.5, -0.3], [1.0, 1.0], [-0.2, 0.7]):
      a, b = fast.step(action), full.step(action)
      np.testing.assert_array_equal(a[0], b[0])
      assert a[1:5] == b[1:5]


def test_max_episode_steps_option():
  with envs.make('Point-Goal', max_episode_steps=3) as env:
    assert env.spec.max_episode_steps == 3
    env.reset()
    flags = [env.step([0.0, 0.0])[4] for _ in range(3)]
    assert flags == [False, False, True]


@pytest.mark.parametrize('asynchronous', [False, True])
def test_make_vec_batches_and_autoresets(asynchronous):
  n, limit = 2, 4
  with envs.make_vec('Car-Circle', n, seed=3, asynchronous=asynchronous,
                     max_episode_steps=limit) as venv:
    assert (venv.num_envs, venv.obs_dim, venv.act_dim) == (n, 8, 2)
    assert venv.action_space.shape == (n, 2) and venv.observation_space.shape == (n, 8)
    obs, _ = venv.reset()
    assert obs.shape == (n, 8) and obs.dtype == np.float32
    single = envs.make('Car-Circle', seed=4)  # copy 1 has seed 3 + 1
    np.testing.assert_array_equal(obs[1], single.reset()[0])
    single.close()
    for t in range(limit):
      obs, reward, cost, terminated, truncated, info = venv.step(np.zeros((n, 2)))
      assert obs.shape == (n, 8) and obs.dtype == np.float32
      assert reward.shape == cost.shape == terminated.shape == truncated.shape == (n,)
      assert terminated.dtype == truncated.dtype == bool
      assert np.all(cost >= 0)
      assert info['_final_observation'].tolist() == [t == limit - 1] * n
    assert np.all(truncated)
    for i in range(n):
      final = info['final_observation'][i]
      assert final.shape == (8,) and not np.array_equal(final, obs[i])
      assert isinstance(info['final_info'][i], dict)
    with pytest.raises(ValueError, match=r'expected shape \(2, 2\), got \(2,\)'):
      venv.step(np.zeros(2))
    with pytest.raises(ValueError, match=r'actions\[1\]: contains NaN or inf'):
      venv.step(np.array([[0.0, 0.0], [np.nan, 0.0]]))


@pytest.mark.parametrize('asynchronous', [False, True])
def test_split_views_step_only_their_copies(asynchronous):
  with envs.make_vec('Car-Circle', 4, seed=3, asynchronous=asynchronous) as whole, \
      envs.make_vec('Car-Circle', 4, seed=3) as reference:
    halves = whole.split(2)
    assert [h.num_envs for h in halves] == [2, 2]
    assert halves[1].action_space.shape == (2, 2) and halves[1].observation_space.shape == (2, 8)
    obs = np.concatenate([h.reset(seed=5)[0] for h in halves])  # Copy i gets seed 5 + i.
    np.testing.assert_array_equal(obs, reference.reset(seed=5)[0])
    actions = np.random.default_rng(0).uniform(-1, 1, (3, 4, 2))
    for a in actions:
      second = halves[1].step(a[2:])[0]
      first = halves[0].step(a[:2])[0]
      np.testing.assert_array_equal(np.concatenate([first, second]), reference.step(a)[0])
    halves[0].close()  # A view closes nothing: the copies still step.
    halves[0].step(actions[0, :2])
    with pytest.raises(ValueError, match='cannot split 4 env copies into 3'):
      whole.split(3)


def test_merge_infos_masks_missing_keys():
  merged = vector._merge_infos([{'a': np.zeros(3), 'b': 1.5}, {'a': np.ones(3), 'c': True}])
  assert merged['a'].dtype == object and merged['a'][1].tolist() == [1.0, 1.0, 1.0]
  assert merged['_a'].tolist() == [True, True]
  assert merged['b'].tolist() == [1.5, 0.0] and merged['_b'].tolist() == [True, False]
  assert merged['c'].tolist() == [False, True] and merged['_c'].tolist() == [False, True]


def test_make_vec_merges_infos():
  with envs.make_vec('Car-Gather', 2, seed=0) as venv:
    venv.reset()
    info = venv.step(np.zeros((2, 2)))[5]
    assert info['success'].dtype == bool and info['_success'].all()
    assert info['cost'].shape == (2,)


metadrive_available = importlib.util.find_spec('gold_jax.envs.metadrive') is not None


@pytest.mark.skipif(not metadrive_available, reason='gold_jax.envs.metadrive is not present')
def test_metadrive_safe_resets_and_steps():
  with envs.make('MetaDrive-Safe', seed=0, num_scenarios=1) as env:
    assert env.spec.name == 'MetaDrive-Safe' and env.act_dim == 2
    obs, info = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (env.obs_dim,)
    assert info['success'] is False
    for _ in range(5):
      result = env.step(np.array([0.0, 1.0]))
      _check_step(env, result)
      for key in ('arrive_dest', 'crash', 'out_of_road', 'route_completion'):
        assert key in result[5]
    env.reset()
    for _ in range(100):  # full throttle, hard steering: off the road within a few steps
      result = env.step(np.array([1.0, 1.0]))
      if result[2] > 0:
        break
    _check_step(env, result)
    assert result[2] > 0 and result[5]['out_of_road'] and not result[5]['success']


def test_metadrive_vector_needs_processes():
  with pytest.raises(ValueError, match='asynchronous=True'):
    envs.make_vec('MetaDrive-Safe', 2)
