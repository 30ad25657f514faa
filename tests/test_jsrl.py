"""JSRL mixing by timestep, the two horizon curricula and the released probability schedule."""

import concurrent.futures
import math

import numpy as np
import pytest

from gold_jax import jsrl


class ScriptedPolicy:
  """Acts with a constant `value` and records every call it gets."""

  def __init__(self, value: float, act_dim: int = 2):
    self.value, self.act_dim = value, act_dim
    self.acted, self.observed, self.restarts, self.resets = [], [], [], []

  def reset(self, n):
    self.resets.append(n)

  def act(self, obs):
    self.acted.append(obs[:, 0].copy())
    return np.full((obs.shape[0], self.act_dim), self.value, np.float32)

  def observe(self, action, reward, cost):
    self.observed.append(np.asarray(action)[:, 0].copy())

  def restart(self, done):
    self.restarts.append(np.asarray(done).copy())


GUIDE, STUDENT = 1.0, -1.0


class CountingGuide(ScriptedPolicy):
  """A guide whose action is the number of earlier `act` calls (tells prefetches apart)."""

  def act(self, obs):
    super().act(obs)
    return np.full((obs.shape[0], self.act_dim), len(self.acted), np.float32)


def _policy(horizon, **kwargs):
  guide, student = ScriptedPolicy(GUIDE), ScriptedPolicy(STUDENT)
  return jsrl.JSRLPolicy(guide, student, horizon, **kwargs), guide, student


@pytest.mark.parametrize('horizon', [0, 1, 3, 7])
def test_guide_acts_exactly_h_steps_then_student(horizon):
  policy, guide, student = _policy(horizon)
  policy.reset(1)
  obs = np.zeros((1, 4), np.float32)
  for t in range(7):
    obs[0, 0] = t
    action = policy.act(obs)
    expected = GUIDE if t < horizon else STUDENT
    np.testing.assert_array_equal(action, np.full((1, 2), expected))
    assert policy.from_guide.tolist() == [t < horizon]
    policy.observe(action, np.zeros(1), np.zeros(1))
  # The guide saw (act + observe) exactly its h steps, with its own actions.
  assert [int(o[0]) for o in guide.acted] == list(range(min(horizon, 7)))
  assert [float(a[0]) for a in guide.observed] == [GUIDE] * min(horizon, 7)
  # The student is queried every step (its action is only discarded during the guide phase,
  # except when every env is in the guide phase: then it is not queried at all).
  assert len(student.acted) == 7 - min(horizon, 7)


def test_each_env_has_its_own_timestep_and_restart():
  policy, guide, _ = _policy(horizon=2)
  policy.reset(2)
  obs = np.zeros((2, 3), np.float32)
  script = [  # (expected sources of env 0 and env 1, done flags after the step)
      ([True, True], [False, False]),
      ([True, True], [False, True]),    # env 1 ends after 2 steps
      ([False, True], [False, False]),  # env 1 restarted: guide again
      ([False, True], [True, False]),   # env 0 ends after 4 steps
      ([True, False], [False, False]),
      ([True, False], [False, False]),
      ([False, False], [False, False]),
  ]
  for sources, done in script:
    action = policy.act(obs)
    assert policy.from_guide.tolist() == sources
    np.testing.assert_array_equal(action[:, 0], np.where(sources, GUIDE, STUDENT))
    policy.observe(action, np.zeros(2), np.zeros(2))
    policy.restart(np.asarray(done))
  # The guide is told about restarts (its context must restart too).
  assert [r.tolist() for r in guide.restarts][1] == [False, True]
  # While one env is in the guide phase the guide observes the executed actions of both,
  # the student's included.
  np.testing.assert_array_equal(guide.observed[2], [STUDENT, GUIDE])


def test_student_alone_without_guide():
  student = ScriptedPolicy(STUDENT)
  policy = jsrl.JSRLPolicy(None, student, horizon=100)
  policy.reset(3)
  action = policy.act(np.zeros((3, 2), np.float32))
  np.testing.assert_array_equal(action, np.full((3, 2), STUDENT))
  assert not policy.from_guide.any()


def test_negative_horizon_and_bad_curricula_raise():
  with pytest.raises(ValueError, match='>= 0'):
    jsrl.JSRLPolicy(None, ScriptedPolicy(0.0), horizon=-1)
  with pytest.raises(ValueError, match='empty'):
    jsrl.FixedCurriculum([], stage_steps=10)
  with pytest.raises(ValueError, match='>= 0'):
    jsrl.FixedCurriculum([5, -1], stage_steps=10)
  with pytest.raises(ValueError, match='increase'):
    jsrl.AutoCurriculum([1, 5])
  with pytest.raises(ValueError, match='positive'):
    jsrl.FixedCurriculum([5, 0], stage_steps=0)


def test_fixed_curriculum_advances_every_stage_steps():
  curriculum = jsrl.FixedCurriculum([500, 400, 0], stage_steps=100)
  policy, _, _ = _policy(horizon=0)
  horizons = {}
  for step in (0, 99, 100, 199, 200, 10_000):
    curriculum.on_step(step)
    curriculum.apply(policy)
    horizons[step] = policy.horizon
  assert horizons == {0: 500, 99: 500, 100: 400, 199: 400, 200: 0, 10_000: 0}
  assert curriculum.metrics() == {'training/horizon': 0.0}
  restored = jsrl.FixedCurriculum([500, 400, 0], stage_steps=100)
  restored.load_state_dict(curriculum.state_dict())
  assert restored.horizon == 0


def test_auto_curriculum_needs_return_and_cost_over_a_window():
  curriculum = jsrl.AutoCurriculum([30, 20, 0], tolerance=0.1, window=2, cost_limit=5.0)
  assert not curriculum.on_eval(1e9, 0.0)  # No guide reference yet: never advances.
  curriculum.set_reference(100.0)
  assert curriculum.target_return == pytest.approx(90.0)
  curriculum.history.clear()
  assert not curriculum.on_eval(95.0, 0.0)   # Window not full yet.
  assert not curriculum.on_eval(80.0, 0.0)   # Mean 87.5 < 90.
  assert curriculum.on_eval(100.0, 0.0)      # Mean of (80, 100) = 90 >= 90: advance.
  assert curriculum.horizon == 20
  assert not curriculum.on_eval(200.0, 9.0)  # Window restarted after advancing.
  assert not curriculum.on_eval(200.0, 9.0)  # Return high but cost 9 > kappa = 5.
  assert curriculum.on_eval(200.0, 1.0)      # Mean cost (9 + 1) / 2 = 5 <= 5: advance.
  assert curriculum.horizon == 0
  assert not curriculum.on_eval(1e9, 0.0) and not curriculum.on_eval(1e9, 0.0)  # Last stage.
  state = curriculum.state_dict()
  restored = jsrl.AutoCurriculum([30, 20, 0], tolerance=0.1, window=2, cost_limit=5.0)
  restored.load_state_dict(state)
  assert (restored.stage, restored.guide_return, list(restored.history)) == (
      2, 100.0, list(curriculum.history))


def test_auto_curriculum_negative_guide_return():
  curriculum = jsrl.AutoCurriculum([10, 0], tolerance=0.5, window=1)
  curriculum.set_reference(-100.0)
  assert curriculum.target_return == pytest.approx(-150.0)
  assert not curriculum.on_eval(-160.0, 0.0)
  assert curriculum.on_eval(-140.0, 0.0)


def test_prob_schedule_probabilities():
  schedule = jsrl.ProbSchedule(p0=0.9, T=1000)
  assert schedule.prob(0) == pytest.approx(0.9)
  assert schedule.prob(200) == pytest.approx(0.9 * math.exp(-1.0))
  assert schedule.prob(1000) == pytest.approx(0.9 * math.exp(-5.0))
  assert schedule.prob(1001) == 0.0 and schedule.prob(10**6) == 0.0
  with pytest.raises(ValueError):
    jsrl.ProbSchedule(p0=1.5)
  with pytest.raises(ValueError):
    jsrl.ProbSchedule(T=0)


def test_prob_schedule_mixes_with_that_probability_and_stops_after_T():
  schedule = jsrl.ProbSchedule(p0=0.9, T=1000)
  policy, guide, _ = _policy(horizon=0, seed=3)
  policy.reset(1000)
  obs = np.zeros((1000, 2), np.float32)
  for step, expected in ((0, 0.9), (200, 0.9 * math.exp(-1.0))):
    schedule.on_step(step)
    schedule.apply(policy)
    action = policy.act(obs)
    share = policy.from_guide.mean()
    assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / 1000)
    np.testing.assert_array_equal(action[:, 0], np.where(policy.from_guide, GUIDE, STUDENT))
    policy.observe(action, np.zeros(1000), np.zeros(1000))
  # While the guide may act it sees every executed step, the student's included.
  assert len(guide.observed) == 2
  assert set(np.unique(guide.observed[0])) == {GUIDE, STUDENT}
  schedule.on_step(1001)
  schedule.apply(policy)
  calls = len(guide.acted)
  policy.act(obs)
  assert not policy.from_guide.any() and len(guide.acted) == calls  # Not even queried.
  assert schedule.metrics() == {'training/guide_prob': 0.0}


@pytest.mark.parametrize('guide_prob', [None, 0.5])
def test_prefetch_gives_the_actions_act_would(guide_prob):
  executor = concurrent.futures.ThreadPoolExecutor(1)
  runs = []
  for prefetch in (False, True):
    guide, student = CountingGuide(GUIDE), ScriptedPolicy(STUDENT)
    policy = jsrl.JSRLPolicy(guide, student, horizon=3, guide_prob=guide_prob, seed=4)
    policy.reset(2)
    actions = []
    for t in range(6):
      obs = np.full((2, 3), t, np.float32)
      if prefetch:
        policy.prefetch(obs, executor)
      actions.append(policy.act(obs)[:, 0])
      policy.observe(actions[-1][:, None].repeat(2, 1), np.zeros(2), np.zeros(2))
    runs.append((np.array(actions), len(guide.acted), len(student.acted)))
  np.testing.assert_array_equal(runs[0][0], runs[1][0])
  assert runs[0][1:] == runs[1][1:]
  assert runs[0][1] == (3 if guide_prob is None else 6)  # The guide is not fed after h.


def test_prefetch_checks_the_observations_and_reset_drops_it():
  executor = concurrent.futures.ThreadPoolExecutor(1)
  guide, student = CountingGuide(GUIDE), ScriptedPolicy(STUDENT)
  policy = jsrl.JSRLPolicy(guide, student, horizon=5)
  policy.reset(2)
  policy.prefetch(np.zeros((2, 3)), executor)
  with pytest.raises(ValueError, match='other observations than the ones passed to prefetch'):
    policy.act(np.zeros((2, 3)))
  policy.prefetch(np.zeros((2, 3)), executor)
  policy.reset(2)  # Waits for the prefetched step and forgets it.
  obs = np.ones((2, 3))
  np.testing.assert_array_equal(policy.act(obs)[:, 0], [3, 3])


def test_split_shares_the_student_and_copies_the_guide():
  guide, student = ScriptedPolicy(GUIDE), ScriptedPolicy(STUDENT)
  policy = jsrl.JSRLPolicy(guide, student, horizon=2, guide_prob=0.3, seed=1)
  parts = policy.split(2)
  assert all(p.student is student for p in parts)
  assert parts[0].guide is not guide and parts[0].guide is not parts[1].guide
  assert all(p.horizon == 2 and p.guide_prob == 0.3 for p in parts)
  assert parts[0].rng.random() != parts[1].rng.random()


def test_needs_guide_and_given_student_actions():
  policy, guide, student = _policy(2)
  policy.reset(2)
  obs = np.zeros((2, 3), np.float32)
  given = np.full((2, 2), 0.5, np.float32)
  for t in range(4):
    assert policy.needs_guide() == (t < 2)
    action = policy.act(obs, student_action=given)
    np.testing.assert_array_equal(action, np.full((2, 2), GUIDE if t < 2 else 0.5))
    policy.observe(action, np.zeros(2), np.zeros(2))
  assert not student.acted  # The given actions stood in for the student's.
