"""The evaluation protocol: disjoint episode roles, eval-set ids, per-run rows and curves."""

import numpy as np
import pytest

from gold_jax import envs, protocol, results
from gold_jax.evaluation import evaluate, evaluate_set, run_episodes


def test_roles_are_disjoint_and_above_training_resets():
  ranges = []
  for role in protocol.ROLES:
    for seed in (0, 1, 99):
      start = protocol.first_seed(role, seed)
      ranges.append((start, start + protocol.SEED_STRIDE))
  ranges.sort()
  for (_, end), (start, _) in zip(ranges, ranges[1:]):
    assert end <= start
  # The loop's training resets (seed * 1_000_003 + step) stay below every role's range.
  assert 99 * 1_000_003 + 10**7 < min(start for start, _ in ranges)
  assert max(end for _, end in ranges) < 2**32


def test_bad_role_and_seed_are_refused():
  with pytest.raises(ValueError, match='role'):
    protocol.first_seed('training', 0)
  with pytest.raises(ValueError, match='seeds 0..99'):
    protocol.evaluation_seed(100)


def test_eval_set_id_depends_on_task_length_and_episodes():
  a = protocol.eval_set('Car-Circle', 300, 0, 10)
  assert a.episodes == 10 and a.reset_seeds[0] == protocol.evaluation_seed(0)
  assert a.id == protocol.eval_set('Car-Circle', 300, 0, 10).id
  assert len(a.id) == 8 and int(a.id, 16) >= 0
  others = [protocol.eval_set('Car-Circle', 300, 1, 10), protocol.eval_set('Car-Circle', 200, 0, 10),
            protocol.eval_set('Point-Goal', 300, 0, 10), protocol.eval_set('Car-Circle', 300, 0, 11)]
  assert len({a.id} | {o.id for o in others}) == 5
  scen = protocol.eval_set('MetaDrive-Waymo', 90, 0, 0, ['s1.pkl', 's2.pkl'], [3, 4])
  assert scen.episodes == 2 and scen.scenario_indices == (3, 4)
  assert scen.id != protocol.eval_set('MetaDrive-Waymo', 90, 0, 0, ['s2.pkl', 's1.pkl'], [4, 3]).id
  with pytest.raises(ValueError, match='at least one'):
    protocol.eval_set('Car-Circle', 300, 0, 0)


class _SeedPolicy:
  """Acts with a constant; records nothing. Episode outcomes depend only on the env seeds."""

  def reset(self, n):
    self.n = n

  def act(self, obs):
    return np.zeros((obs.shape[0], 2), np.float32)

  def observe(self, action, reward, cost):
    pass

  def restart(self, done):
    pass


def test_evaluate_set_scores_the_same_episodes_whatever_the_copies():
  eval_set = protocol.eval_set('Car-Circle', 20, 3, 5)
  scores = []
  for copies in (1, 2, 5):
    with envs.make_vec('Car-Circle', copies, seed=7 * copies, max_episode_steps=20) as env:
      scores.append(evaluate_set(_SeedPolicy(), env, eval_set))
  for other in scores[1:]:
    assert other == pytest.approx(scores[0])
  with envs.make_vec('Car-Circle', 2, max_episode_steps=20) as env:
    first = run_episodes(_SeedPolicy(), env, 3, eval_set.reset_seeds[0])
    again = evaluate(_SeedPolicy(), env, 3, eval_set.reset_seeds[0])
  assert again['evaluation/reward_mean'] == pytest.approx(first['return'].mean())


def test_scenario_list_needs_enough_scenarios():
  with envs.make_vec('Car-Circle', 1, max_episode_steps=5) as env:
    with pytest.raises(ValueError, match='scenarios'):
      run_episodes(_SeedPolicy(), env, 3, 0, scenarios=[0, 1])


def test_vector_reset_options_are_per_copy():
  with envs.make_vec('Car-Circle', 2, max_episode_steps=5) as env:
    with pytest.raises(ValueError, match='one per env copy'):
      env.reset(seed=0, options=[None])
    obs, _ = env.reset(seed=0, options=[None, None])
    assert obs.shape[0] == 2


def test_runs_csv_round_trip_and_table(tmp_path):
  rows = [results.run_row('Car-Circle', m, s, {'reward': r, 'cost': c, 'episodes': 10,
                                                'eval_set': 'abcd1234', 'seconds': 3.0})
          for m, s, r, c in (('DT', 0, 10.0, 1.0), ('DT', 1, 20.0, 3.0), ('expert', 0, 30.0, 2.0),
                             ('IQL', 0, 5.0, 0.0))]
  path = str(tmp_path / 'runs.csv')
  results.write_runs_csv(rows, path)
  back = results.read_runs_csv(path)
  assert [r['method'] for r in back] == ['DT', 'DT', 'IQL', 'expert']
  assert back[0]['success'] == '' and back[0]['eval_set'] == 'abcd1234'
  table = results.table_from_rows(back, ['Car-Circle'], results.METHODS)
  assert table['Car-Circle']['DT'].reward == [10.0, 20.0]
  assert table['Car-Circle']['CVPO'].seeds == 0
  assert results.mixed_eval_sets(back) == []
  back[2]['eval_set'] = 'ffff0000'
  assert results.mixed_eval_sets(back) == [('Car-Circle', 0)]
  md = results.experts_markdown(back, {'Car-Circle': 10.0})
  assert '30.0 / 2.0' in md and '1 of 1' in md
  (tmp_path / 'bad.csv').write_text('task,method\nx,y\n')
  with pytest.raises(ValueError, match='not a runs.csv'):
    results.read_runs_csv(str(tmp_path / 'bad.csv'))
