"""The training loop: labelled sources, terminated vs truncated, UTD, its saved state and the
adaptive λ fed with the student's measured cost."""

import json
import types

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from gold_jax import jsrl, loop
from gold_jax.agents import lagrange
from gold_jax.data.replay import GUIDE, STUDENT, ReplayBuffer
from gold_jax.evaluation import evaluate
from gold_jax.policies import RandomPolicy


class FakeVecEnv:
  """n copies; copy i's episode ends after `lengths[i]` steps, terminated or truncated.

  Observations are (episode index, timestep, copy); the reward is the timestep and the cost
  1 on even timesteps. Autoreset follows gymnasium 0.28 (`final_observation`, `final_info`).
  """

  def __init__(self, lengths, terminates, success_at=None):
    self.num_envs = len(lengths)
    self.lengths, self.terminates = np.asarray(lengths), np.asarray(terminates)
    self.success_at = success_at
    self.spec = types.SimpleNamespace(has_success=success_at is not None)
    self.seeds = []

  def _obs(self):
    return np.stack([self.episode, self.t, np.arange(self.num_envs)], 1).astype(np.float32)

  def reset(self, seed=None):
    self.seeds.append(seed)
    self.t = np.zeros(self.num_envs, np.int64)
    self.episode = np.zeros(self.num_envs, np.int64)
    return self._obs(), {}

  def step(self, action):
    assert action.shape == (self.num_envs, 2)
    reward, cost = self.t.astype(np.float64), (self.t % 2 == 0).astype(np.float64)
    self.t += 1
    ended = self.t >= self.lengths
    terminated, truncated = ended & self.terminates, ended & ~self.terminates
    success = (self.t == self.success_at) if self.success_at is not None else None
    final_obs = np.empty(self.num_envs, object)
    final_info = np.empty(self.num_envs, object)
    obs = self._obs()
    for i in np.flatnonzero(ended):
      final_obs[i] = obs[i].copy()
      final_info[i] = {} if success is None else {'success': bool(success[i])}
    self.episode[ended] += 1
    self.t[ended] = 0
    info = {'final_observation': final_obs, '_final_observation': ended,
            'final_info': final_info, '_final_info': ended}
    if success is not None:
      info.update(success=success & ~ended, _success=np.ones(self.num_envs, bool))
    return self._obs(), reward, cost, terminated, truncated, info


class CountingLearner:
  """A learner stand-in whose `update_n` records the stacked batch shapes it gets."""

  def __init__(self):
    self.calls = []

  def update_n(self, state, batches):
    chex.assert_rank(batches.obs, 3)
    self.calls.append(batches.obs.shape)
    return state + 1, {'loss/fake': jnp.mean(batches.reward)}


class ConstantPolicy(RandomPolicy):

  def __init__(self, value):
    super().__init__(act_dim=2)
    self.value = value

  def act(self, obs):
    return np.full((obs.shape[0], 2), self.value, np.float32)


def _make_loop(env, horizon, config=loop.LoopConfig(train_every=4, batch_size=2,
                                                    learning_starts=0), learner=None):
  student = ConstantPolicy(-1.0)
  policy = jsrl.JSRLPolicy(ConstantPolicy(1.0), student, horizon)
  buffer = ReplayBuffer(obs_dim=3, act_dim=2, capacity=1000)
  return loop.GuidedLoop(env, policy, student, learner or CountingLearner(), 0, buffer,
                         schedule=None, config=config)


def test_sources_are_labelled_per_transition():
  env = FakeVecEnv(lengths=[5, 3], terminates=[False, True])
  runner = _make_loop(env, horizon=2)
  runner.run(until_step=16)
  buffer = runner.buffer
  data = buffer.to_state_dict()
  n = len(buffer)
  assert n == 16 and runner.step == 16
  timestep = data['obs'][:n, 1]
  # The guide acted exactly at timesteps 0 and 1 of every episode, the student elsewhere.
  np.testing.assert_array_equal(buffer.sources(), np.where(timestep < 2, GUIDE, STUDENT))
  np.testing.assert_array_equal(data['action'][:n, 0], np.where(timestep < 2, 1.0, -1.0))
  assert set(np.unique(buffer.sources())) == {GUIDE, STUDENT}
  metrics = runner.pop_metrics()
  assert metrics['training/guide_share'] == pytest.approx(np.mean(timestep < 2))
  assert metrics['training/student_share'] == pytest.approx(np.mean(timestep >= 2))


def test_terminated_versus_truncated():
  env = FakeVecEnv(lengths=[3, 4], terminates=[True, False])
  runner = _make_loop(env, horizon=0)
  runner.run(until_step=16)
  data = runner.buffer.to_state_dict()
  n = len(runner.buffer)
  obs, next_obs, terminated = data['obs'][:n], data['next_obs'][:n], data['terminated'][:n]
  copy, timestep = obs[:, 2], obs[:, 1]
  last0 = (copy == 0) & (timestep == 2)  # Copy 0's last step: terminated, no bootstrap.
  last1 = (copy == 1) & (timestep == 3)  # Copy 1's last step: truncated, still bootstraps.
  np.testing.assert_array_equal(terminated, last0.astype(np.float32))
  assert last1.sum() == 2 and not terminated[last1].any()
  # Episodes that end keep their own final observation, not the next episode's first one.
  np.testing.assert_array_equal(next_obs[last0 | last1, 1], timestep[last0 | last1] + 1)
  np.testing.assert_array_equal(next_obs[:, 0], obs[:, 0])  # Same episode index.
  # Within an episode next_obs is the next step's obs.
  mid = ~(last0 | last1)
  np.testing.assert_array_equal(next_obs[mid, 1], timestep[mid] + 1)
  # The reset came after the end: the next obs of each copy starts a new episode at t = 0.
  later = obs[(copy == 0) & (obs[:, 0] == 1)]
  assert later[0, 1] == 0
  # Rewards and costs are stored as the env gave them.
  np.testing.assert_array_equal(data['reward'][:n], timestep)
  np.testing.assert_array_equal(data['cost'][:n], (timestep % 2 == 0).astype(np.float32))
  metrics = runner.pop_metrics()
  # 8 steps per copy: copy 0 ends episodes (return 0+1+2) at its steps 3 and 6, copy 1
  # (return 0+1+2+3) at its steps 4 and 8.
  assert metrics['training/episodes'] == 4
  assert metrics['training/episode_return'] == pytest.approx((3 + 3 + 6 + 6) / 4)
  assert metrics['training/episode_length'] == pytest.approx(3.5)


def test_utd_fuses_k_updates_every_train_every_steps():
  env = FakeVecEnv(lengths=[50, 50], terminates=[False, False])
  learner = CountingLearner()
  config = loop.LoopConfig(utd=2, train_every=4, batch_size=3, learning_starts=6)
  runner = _make_loop(env, horizon=0, config=config, learner=learner)
  runner.run(until_step=30)
  # Updates start at step 6 and run every 4 env steps after: at steps 10, 14, ..., 30.
  assert learner.calls == [(8, 3, 3)] * 6
  assert runner.num_updates == 48 and runner.state == 6
  metrics = runner.pop_metrics()
  assert metrics['training/num_updates'] == 48 and np.isfinite(metrics['loss/fake'])


def test_non_finite_metrics_raise():
  class NanLearner(CountingLearner):

    def update_n(self, state, batches):
      return state, {'loss/bad': jnp.nan}

  env = FakeVecEnv(lengths=[5], terminates=[False])
  runner = _make_loop(env, horizon=0, learner=NanLearner())
  with pytest.raises(FloatingPointError, match='loss/bad'):
    runner.run(until_step=8)


@pytest.mark.parametrize('kwargs, match', [
    (dict(utd=0), 'utd'), (dict(train_every=3), 'multiple'), (dict(utd=0.3, train_every=2),
                                                                  'integer')])
def test_bad_loop_config_raises(kwargs, match):
  with pytest.raises(ValueError, match=match):
    loop.LoopConfig(**kwargs).validate(num_envs=2)


def test_state_dict_round_trip_continues_identically():
  schedule = jsrl.ProbSchedule(p0=0.9, T=40)

  def make():
    env = FakeVecEnv(lengths=[7, 9], terminates=[False, True])
    runner = _make_loop(env, horizon=0)
    runner.schedule = schedule
    return runner

  first = make()
  first.run(until_step=20)
  state = first.state_dict()
  saved = first.buffer.to_state_dict()
  first.run(until_step=30)
  draws = first.rng.integers(0, 1 << 30, 4), first.policy.rng.random(4)
  second = make()
  second.load_state_dict(state)
  assert second.step == 20 and second.schedule.step == 20
  second.buffer = ReplayBuffer.from_state_dict(saved)
  second.run(until_step=30)
  # The sampling and mixing generators continue where they stopped.
  np.testing.assert_array_equal(second.rng.integers(0, 1 << 30, 4), draws[0])
  np.testing.assert_array_equal(second.policy.rng.random(4), draws[1])
  assert len(second.buffer) == 30 and second.num_updates == first.num_updates
  # The resumed loop restarts its envs with a seed derived from the step count.
  assert second.env.seeds == [20]


def test_evaluate_reports_each_episode_once():
  env = FakeVecEnv(lengths=[4, 6, 5], terminates=[True, False, False], success_at=3)
  metrics = evaluate(ConstantPolicy(0.0), env, num_episodes=5, seed=0)
  # Two rounds of three copies; the first five episodes count.
  returns = np.array([6, 15, 10, 6, 15])
  assert metrics['evaluation/reward_mean'] == pytest.approx(returns.mean())
  assert metrics['evaluation/reward_std'] == pytest.approx(returns.std())
  assert metrics['evaluation/cost_mean'] == pytest.approx(np.mean([2, 3, 3, 2, 3]))
  assert metrics['evaluation/episode_length'] == pytest.approx(np.mean([4, 6, 5, 4, 6]))
  assert metrics['evaluation/success_rate'] == 1.0  # Every episode reaches t = 3.
  assert env.seeds == [0, 3]


def _dt_loop(env, pipeline, horizon=3):
  """A tiny DT guide and a stochastic MLP student on a real vector env."""
  from gold_jax import envs as _  # pylint: disable=unused-import,g-import-not-at-top
  from gold_jax.agents import bc, dt  # pylint: disable=g-import-not-at-top
  from gold_jax.policies import DTPolicy, MLPPolicy  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  key = jax.random.PRNGKey(0)
  guide_state = dt.init(key, env.obs_dim, env.act_dim,
                        dt.Config(embed_dim=16, num_layers=1, mlp_dim=32, context_len=4))
  state = bc.init(key, env.obs_dim, env.act_dim, bc.Config(hidden_dims=(8,)))
  student = MLPPolicy(bc, state, deterministic=True)
  policy = jsrl.JSRLPolicy(DTPolicy(guide_state, 10.0), student, horizon)
  buffer = ReplayBuffer(env.obs_dim, env.act_dim, 1000)
  config = loop.LoopConfig(train_every=4, batch_size=2, learning_starts=1 << 30,
                           pipeline=pipeline)
  return loop.GuidedLoop(env, policy, student, bc, state, buffer, schedule=None, config=config)


def test_pipelined_loops_collect_what_the_sequential_one_does():
  from gold_jax import envs  # pylint: disable=g-import-not-at-top
  data = {}
  for pipeline in ('off', 'thread', 'process'):
    with envs.make_vec('Car-Circle', 4, seed=2, max_episode_steps=5) as env:
      runner = _dt_loop(env, pipeline)
      runner.run(until_step=4 * 12)
      runner.close()
      assert runner.step == 48 and len(runner.buffer) == 48
      halves = [2, 2] if pipeline != 'off' else [4]
      assert [lane.env.num_envs for lane in runner.lanes] == halves
      metrics = runner.pop_metrics()
      assert metrics['training/episodes'] == 8 and metrics['training/guide_share'] == pytest.approx(8 / 12)
      data[pipeline] = (runner.buffer.to_state_dict(), runner.buffer.sources())
  sequential, seq_sources = data['off']
  np.testing.assert_array_equal(seq_sources.reshape(12, 4)[:, 0],
                                [GUIDE] * 3 + [STUDENT] * 2 + [GUIDE] * 3 + [STUDENT] * 2
                                + [GUIDE] * 2)
  for pipeline in ('thread', 'process'):
    # Same envs, a deterministic guide and student: the same transitions in the same order.
    pipelined, pipe_sources = data[pipeline]
    np.testing.assert_array_equal(seq_sources, pipe_sources)
    for name in ('obs', 'action', 'reward', 'next_obs', 'terminated'):
      np.testing.assert_allclose(pipelined[name][:48], sequential[name][:48], atol=1e-5,
                                 err_msg=f'{pipeline}: {name}')


def test_pipelined_loop_state_round_trip_and_mismatch():
  from gold_jax import envs  # pylint: disable=g-import-not-at-top
  with envs.make_vec('Car-Circle', 2, seed=0, max_episode_steps=5) as env:
    runner = _dt_loop(env, pipeline='process', horizon=5)
    runner.run(until_step=6)
    saved = runner.state_dict()
    runner.close()
    assert len(saved['policy_rng']) == 2
    other = _dt_loop(env, pipeline='thread', horizon=5)
    other.load_state_dict(saved)
    assert other.step == 6 and other.obs is None
    other.run(until_step=10)
    other.close()
    sequential = _dt_loop(env, pipeline='off')
    with pytest.raises(ValueError, match='resume with the same pipeline setting'):
      sequential.load_state_dict(saved)


def test_pipeline_needs_an_even_number_of_envs():
  with pytest.raises(ValueError, match='even number of envs'):
    loop.LoopConfig(train_every=3, pipeline='process').validate(3)
  with pytest.raises(ValueError, match="pipeline must be one of .* got 'on'"):
    loop.LoopConfig(pipeline='on').validate(2)
  env = FakeVecEnv(lengths=[3, 3], terminates=[False, False])
  with pytest.raises(ValueError, match='split'):
    _make_loop(env, 1, config=loop.LoopConfig(train_every=4, batch_size=2, learning_starts=0,
                                              pipeline='thread'))


# -- adaptive λ from the student's measured cost ------------------------------------------------


class CostAtEnv(FakeVecEnv):
  """FakeVecEnv whose cost is 1 exactly at the timesteps in `costly` (a set)."""

  def __init__(self, lengths, costly):
    super().__init__(lengths, terminates=[False] * len(lengths))
    self.costly = costly

  def step(self, action):
    t = self.t.copy()
    result = list(super().step(action))
    result[2] = np.isin(t, list(self.costly)).astype(np.float64)
    return tuple(result)


class LambdaLearner(CountingLearner):
  """A learner stand-in that adapts λ: records the episode costs `update_lambda` gets."""

  def __init__(self):
    super().__init__()
    self.episode_costs = []

  @staticmethod
  def adapts_lambda(config):
    return config != 'fixed'

  def update_n(self, state, batches):
    self.calls.append(batches.obs.shape)
    return state, {'loss/fake': jnp.mean(batches.reward)}

  def update_lambda(self, state, episode_cost):
    self.episode_costs.append(float(episode_cost))
    return state, {'training/lambda_cost_error': jnp.float32(episode_cost)}


def _lambda_loop(env, horizon, learner, state=types.SimpleNamespace(config='adaptive'),
                 cost_window=5):
  config = loop.LoopConfig(train_every=env.num_envs, batch_size=1, learning_starts=0,
                           cost_window=cost_window)
  student = ConstantPolicy(-1.0)
  policy = jsrl.JSRLPolicy(ConstantPolicy(1.0), student, horizon)
  return loop.GuidedLoop(env, policy, student, learner, state,
                         ReplayBuffer(obs_dim=3, act_dim=2, capacity=1000), None, config)


def test_lambda_sees_the_students_own_cost_scaled_to_the_episode():
  # 5-step episodes, guide at t = 0, 1; cost at t = 0 (guide), 2 and 4 (student): the student
  # pays 2 over its 3 steps, i.e. 2/3 per step, 10/3 per 5-step episode; the guide's cost and
  # the episode's own cost (3) do not count.
  learner = LambdaLearner()
  runner = _lambda_loop(CostAtEnv([5], {0, 2, 4}), horizon=2, learner=learner)
  runner.run(until_step=5 * 4)
  assert len(learner.episode_costs) == 4  # Once per finished episode (one env), after an update.
  np.testing.assert_allclose(learner.episode_costs, 10 / 3, rtol=1e-6)
  metrics = runner.pop_metrics()
  assert metrics['training/episode_cost'] == 3.0
  assert metrics['training/student_episode_cost'] == pytest.approx(10 / 3)
  assert metrics['training/lambda_cost_error'] == pytest.approx(10 / 3)
  # The window keeps the last `cost_window` episodes; the state dict carries it (JSON) for resume.
  saved = json.loads(json.dumps(runner.state_dict()))
  other = _lambda_loop(CostAtEnv([5], {0, 2, 4}), horizon=2, learner=LambdaLearner())
  other.load_state_dict(saved)
  assert list(other.student_episodes) == list(runner.student_episodes) == [(2.0, 3, 5)] * 4


def test_lambda_window_averages_cost_rates_over_recent_episodes():
  learner = LambdaLearner()
  runner = _lambda_loop(CostAtEnv([4, 6], {1}), horizon=0, learner=learner, cost_window=2)
  runner.run(until_step=2 * 12)
  # Episodes of 4 and 6 steps, each with cost 1; the window holds the last two finished ones:
  # rate (1 + 1) / (l1 + l2) times their mean length (l1 + l2) / 2 = 1.
  np.testing.assert_allclose(learner.episode_costs, 1.0, rtol=1e-6)


def test_lambda_waits_for_its_start_step():
  # 5-step episodes end at env steps 5, 10, 15, 20; λ moves from step 10 on (a reward-first
  # phase): the first update sees the episodes ending at 5 and 10 together.
  learner = LambdaLearner()
  config = types.SimpleNamespace(multiplier=lagrange.Config(rule='pid', start_step=10))
  runner = _lambda_loop(CostAtEnv([5], {2}), horizon=0, learner=learner,
                        state=types.SimpleNamespace(config=config))
  runner.run(until_step=9)
  assert learner.episode_costs == [] and runner.lambda_start == 10
  runner.run(until_step=20)
  assert len(learner.episode_costs) == 3


def test_no_lambda_update_without_student_steps_or_an_adaptive_learner():
  learner = LambdaLearner()
  runner = _lambda_loop(CostAtEnv([3], {0, 1, 2}), horizon=3, learner=learner)  # Guide only.
  runner.run(until_step=12)
  assert learner.episode_costs == [] and len(learner.calls) == 12
  fixed = LambdaLearner()
  runner = _lambda_loop(CostAtEnv([3], {0}), horizon=0, learner=fixed,
                        state=types.SimpleNamespace(config='fixed'))
  runner.run(until_step=12)
  assert fixed.episode_costs == [] and not runner.adaptive_lambda


@pytest.mark.parametrize('method', ['lagrange', 'pid'])
def test_iql_lambda_tracks_the_student_not_the_guide(method):
  import jax
  from gold_jax.agents import iql
  config = iql.Config(hidden_dims=(8, 8), cost_limit=1.0, multiplier=lagrange.Config(
      rule=method, value=0.5, lr=0.1, kp=0.1, ki=0.1, kd=0.0))
  state = iql.init(jax.random.PRNGKey(0), 3, 2, config)
  # The guide (t = 0, 1) pays 2 per episode, twice κ = 1; the student (t >= 2) pays nothing.
  runner = _lambda_loop(CostAtEnv([6], {0, 1}), horizon=2, learner=iql, state=state)
  runner.run(until_step=6 * 15)
  assert runner.pop_metrics()['training/episode_cost'] == 2.0
  assert float(iql.current_lambda(runner.state)) == 0.0
  # Now the student pays 2 per episode of its own (t = 3, 4): λ rises above its start.
  runner.env.costly = {3, 4}
  runner.run(until_step=6 * 45)
  metrics = runner.pop_metrics()
  assert metrics['training/student_episode_cost'] == pytest.approx(3.0)  # 2 in 4 steps, × 6.
  assert float(iql.current_lambda(runner.state)) > 1.0
