"""Collection strategies (`gold_jax.collection`): sequential and pipelined stepping collect the
same transitions; the pipelined one's host settings and guide thread come and go cleanly."""

import os
import sys

import numpy as np
import pytest

from gold_jax import collection, jsrl, loop
from gold_jax.data.replay import GUIDE, ReplayBuffer
from gold_jax.policies import RandomPolicy


class CopiesEnv:
  """`n` copies of a tiny deterministic env whose state follows the actions; `split` views.

  Copy i's episode ends after `lengths[i]` steps (terminated for odd i, truncated for even).
  Observations are (episode, timestep, copy, running sum of the first action component).
  """
  obs_dim, act_dim = 4, 2

  def __init__(self, lengths, core=None, rows=None):
    self.lengths = np.asarray(lengths)
    self.rows = slice(0, len(self.lengths)) if rows is None else rows
    self.num_envs = self.rows.stop - self.rows.start
    self.core = core if core is not None else {
        name: np.zeros(len(self.lengths), dtype)
        for name, dtype in (('t', np.int64), ('episode', np.int64), ('s', np.float64))}
    self.steps = 0  # `step` calls on this env (not on its views).

  def split(self, parts):
    size = self.num_envs // parts
    return [CopiesEnv(self.lengths, self.core,
                      slice(self.rows.start + k * size, self.rows.start + (k + 1) * size))
            for k in range(parts)]

  def _obs(self):
    c, rows = self.core, self.rows
    return np.stack([c['episode'][rows], c['t'][rows], np.arange(rows.start, rows.stop),
                     c['s'][rows]], 1).astype(np.float32)

  def reset(self, seed=None):
    del seed
    for field in self.core.values():
      field[self.rows] = 0
    return self._obs(), {}

  def step(self, action):
    assert action.shape == (self.num_envs, self.act_dim)
    self.steps += 1
    c, rows = self.core, self.rows
    t = c['t'][rows]
    reward = action[:, 0].astype(np.float64) + t
    cost = (t % 2 == 0).astype(np.float64)
    c['t'][rows] += 1
    c['s'][rows] += action[:, 0]
    ended = c['t'][rows] >= self.lengths[rows]
    odd = np.arange(rows.start, rows.stop) % 2 == 1
    terminated, truncated = ended & odd, ended & ~odd
    obs = self._obs()
    final_obs = np.empty(self.num_envs, object)
    final_info = np.empty(self.num_envs, object)
    for i in np.flatnonzero(ended):
      final_obs[i], final_info[i] = obs[i].copy(), {}
    for name in ('t', 's'):
      c[name][rows] = np.where(ended, 0, c[name][rows])
    c['episode'][rows] += ended
    info = {'final_observation': final_obs, '_final_observation': ended,
            'final_info': final_info, '_final_info': ended}
    return self._obs(), reward, cost, terminated, truncated, info


class ObsPolicy(RandomPolicy):
  """A deterministic policy whose actions depend on the observations."""

  def __init__(self, scale):
    super().__init__(act_dim=2)
    self.scale = scale

  def act(self, obs):
    return np.tanh(self.scale * obs[:, [1, 3]] + 0.1 * obs[:, [2, 0]]).astype(np.float32)


class MeanLearner:
  """A learner stand-in: counts updates, reports the mean sampled reward."""

  def update_n(self, state, batches):
    return state + 1, {'loss/fake': np.float32(np.mean(batches.reward))}


def _loop(pipeline, lengths=(5, 7, 5, 7), horizon=3):
  env = CopiesEnv(lengths)
  student = ObsPolicy(-0.7)
  policy = jsrl.JSRLPolicy(ObsPolicy(0.4), student, horizon)
  buffer = ReplayBuffer(env.obs_dim, env.act_dim, 1000)
  config = loop.LoopConfig(train_every=4, batch_size=4, learning_starts=8, pipeline=pipeline)
  return loop.GuidedLoop(env, policy, student, MeanLearner(), 0, buffer, schedule=None,
                         config=config, seed=3)


def test_make_strategy_picks_by_pipeline_mode():
  env, policy = CopiesEnv([3, 3]), jsrl.JSRLPolicy(ObsPolicy(1.0), ObsPolicy(-1.0), 2)
  sequential = collection.make_strategy('off', env, policy)
  assert isinstance(sequential, collection.Sequential) and not sequential.pipelined
  assert [lane.env for lane in sequential.lanes] == [env]
  assert sequential.lanes[0].policy is policy
  threaded = collection.make_strategy('thread', env, policy)
  try:
    assert isinstance(threaded, collection.Pipelined) and threaded.pipelined
    assert [lane.env.num_envs for lane in threaded.lanes] == [1, 1]
    assert threaded.executor is not None and threaded.server is None
  finally:
    threaded.close()
  assert threaded.executor is None
  with pytest.raises(ValueError, match="pipeline must be one of .* got 'on'"):
    collection.make_strategy('on', env, policy)
  with pytest.raises(ValueError, match='split'):
    collection.make_strategy('thread', NoSplitEnv(), policy)


class NoSplitEnv:
  num_envs = 2


def test_process_mode_without_a_guide_needs_no_server():
  env, policy = CopiesEnv([3, 3]), jsrl.JSRLPolicy(None, ObsPolicy(-1.0))
  strategy = collection.make_strategy('process', env, policy)
  try:
    assert strategy.server is None and strategy.executor is not None
  finally:
    strategy.close()


def test_loop_exports_stay_importable():
  assert loop.PIPELINE_MODES is collection.PIPELINE_MODES
  assert {'GuidedLoop', 'LoopConfig', 'LoopCheckpoints', 'EpisodeTracker',
          'final_observations', 'episode_success', 'GUIDE', 'STUDENT'} <= set(dir(loop))


@pytest.mark.parametrize('horizon', [0, 3])
def test_sequential_and_thread_pipelining_collect_the_same(horizon):
  runs = {}
  for pipeline in ('off', 'thread'):
    runner = _loop(pipeline, horizon=horizon)
    try:
      runner.run(until_step=4 * 14)
      metrics = runner.pop_metrics()
      runs[pipeline] = (runner.buffer.to_state_dict(), runner.buffer.sources(), metrics,
                        runner.num_updates, runner.state, runner.env.steps)
    finally:
      runner.close()
  (seq, seq_sources, seq_metrics, seq_updates, seq_state, seq_calls) = runs['off']
  (pipe, pipe_sources, pipe_metrics, pipe_updates, pipe_state, pipe_calls) = runs['thread']
  assert len(seq_sources) == 56
  np.testing.assert_array_equal(seq_sources, pipe_sources)
  if horizon:
    assert 0 < np.mean(seq_sources == GUIDE) < 1
  else:
    assert not np.any(seq_sources == GUIDE)
    # No guide ever acts: the pipelined strategy steps the whole env at once, as sequentially.
    assert pipe_calls == 14
  for name in ('obs', 'action', 'reward', 'cost', 'next_obs', 'terminated'):
    np.testing.assert_array_equal(pipe[name][:56], seq[name][:56], err_msg=name)
  assert pipe_updates == seq_updates > 0 and pipe_state == seq_state
  for name in ('loss/fake', 'training/guide_share', 'training/episode_return',
               'training/episode_cost', 'training/episodes'):
    assert pipe_metrics[name] == pytest.approx(seq_metrics[name]), name
  assert seq_calls == 14


def test_pipelined_running_sets_and_restores_host_settings():
  runner = _loop('thread')
  interval = sys.getswitchinterval()
  cpus = os.sched_getaffinity(0) if hasattr(os, 'sched_getaffinity') else None
  try:
    with runner.collection.running():
      assert sys.getswitchinterval() <= collection.PIPELINE_SWITCH_INTERVAL
      if runner.collection.env_cpus:
        assert os.sched_getaffinity(0) == runner.collection.env_cpus
    assert sys.getswitchinterval() == interval
    if cpus is not None:
      assert os.sched_getaffinity(0) == cpus
  finally:
    runner.close()
  sequential = _loop('off')
  with sequential.collection.running():
    assert sys.getswitchinterval() == interval
  sequential.close()
