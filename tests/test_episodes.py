"""The episode runner: the same episodes whatever the copies, records, flags, probes, cuts."""

import numpy as np
import pytest

from gold_jax import envs
from gold_jax.episodes import ActionFunction, play

LENGTH = 15


def _policy():
  """A deterministic policy of the observation, so episodes depend only on their seeds."""
  return ActionFunction(lambda obs: np.tanh(obs[:, :2] - obs[:, 2:4]).astype(np.float32))


def test_record_is_the_same_whatever_the_number_of_copies():
  runs = []
  for copies in (1, 3):
    with envs.make_vec('Car-Circle', copies, seed=11 * copies, max_episode_steps=LENGTH) as env:
      runs.append(play(_policy(), env, 4, seed=500, record=True))
  one, three = runs
  for key in ('return', 'cost', 'length'):
    np.testing.assert_allclose(one[key], three[key])
  for a, b in zip(one['episodes'], three['episodes']):
    for key in ('observations', 'actions', 'rewards', 'next_observations', 'timeouts'):
      np.testing.assert_allclose(a[key], b[key])
  episode = one['episodes'][0]
  assert episode['observations'].shape[0] == LENGTH == one['length'][0]
  np.testing.assert_allclose(episode['next_observations'][:-1], episode['observations'][1:])
  assert episode['timeouts'][-1] and not episode['timeouts'][:-1].any()
  assert not episode['terminals'].any()
  assert one['return'][0] == pytest.approx(episode['rewards'].sum(), rel=1e-5)


def test_probe_reads_the_simulator_after_reset_and_every_step():
  env = envs.make('Car-Circle', max_episode_steps=LENGTH)
  try:
    calls = []
    out = play(_policy(), env, 2, seed=3, probe=lambda e: calls.append(e) or len(calls))
  finally:
    env.close()
  assert [len(e['probe']) for e in out['episodes']] == [LENGTH + 1] * 2
  assert calls[0] is env
  with envs.make_vec('Car-Circle', 2, max_episode_steps=LENGTH) as vec:
    with pytest.raises(ValueError, match='single env'):
      play(_policy(), vec, 2, probe=lambda e: 0)


def test_flags_perturb_and_cut():
  seen = []

  def perturb(action, ids):
    seen.append(ids.copy())
    return -action

  with envs.make_vec('Car-Circle', 2, max_episode_steps=LENGTH) as env:
    out = play(_policy(), env, 3, seed=9, flags=('success', 'no_such_key'), perturb=perturb)
    cut = play(_policy(), env, 2, seed=9, max_steps=5, record=True)
  assert [len(e['success']) for e in out['episodes']] == list(out['length'])
  assert not any(e['no_such_key'].any() for e in out['episodes'])
  assert seen[0].tolist() == [0, 1] and seen[-1].tolist() == [2, 3]
  assert list(cut['length']) == [5, 5]
  assert not cut['episodes'][0]['timeouts'].any()  # A cut episode did not time out.
  with pytest.raises(ValueError, match='positive'):
    play(_policy(), env, 0)


@pytest.mark.parametrize('task', ['Car-Circle', 'Point-Goal'])
def test_envs_expose_what_plots_need(task):
  env = envs.make(task, max_episode_steps=5)
  try:
    env.reset(seed=1)
    start = env.agent_position()
    assert start.shape == (2,) and np.all(np.isfinite(start))
    env.step(np.ones(env.act_dim, np.float32))
    assert not np.allclose(env.agent_position(), start)
    if task == 'Car-Circle':
      assert env.geometry() == {'radius': 7.0, 'x_lim': 6.0} and env.scene() == {}
    else:
      scene = env.scene()
      assert len(scene['goal']) == 3 and all(len(h) == 3 for h in scene['hazard'])
  finally:
    env.close()
