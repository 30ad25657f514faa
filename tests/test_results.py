"""Table I aggregation: mean ± std, bold rules, missing cells, CSV."""

import csv

import numpy as np
import pytest

from gold_jax import results


def _cell(rewards, costs, success=None):
  cell = results.Cell()
  for i, (r, c) in enumerate(zip(rewards, costs)):
    cell.add({'reward': r, 'cost': c, 'success': None if success is None else success[i]})
  return cell


def test_mean_std_and_best():
  table = {'Car-Circle': {
      'IQL': _cell([10.0, 14.0], [30.0, 34.0]),       # high reward but unsafe (cost 32 > 20)
      'GOLD(DT-IQL)': _cell([8.0, 10.0], [4.0, 6.0]),  # best among safe
      'CVPO': _cell([2.0, 2.0], [1.0, 3.0]),           # lowest cost
  }}
  best_r, best_c = results.best_methods(table['Car-Circle'], kappa=20.0)
  assert (best_r, best_c) == ('GOLD(DT-IQL)', 'CVPO')
  md = results.to_markdown(table, {'Car-Circle': 20.0})
  assert '**9.00 ± 1.00**' in md          # GOLD reward, bold
  assert '12.00 ± 2.00' in md and '**12.00' not in md
  assert '**2.00 ± 1.00**' in md          # CVPO cost, bold
  assert md.count('—') == 2 * 4            # BC, DT, GOLD(BC-IQL), GOLD(DT-CVPO) missing: r and c


def test_paper_rows_follow_ours():
  from gold_jax import paper
  assert set(paper.TABLE1) == {'Car-Circle', 'Car-Gather', 'Point-Goal', 'Point-Button',
                               'Point-Push', 'Car-Goal', 'Car-Button', 'Car-Push',
                               'MetaDrive-Waymo'}
  assert paper.table1('Car-Circle')['GOLD(DT-IQL)'] == {'reward': (688.3, 4.2), 'cost': (3.2, 1.5)}
  assert paper.table1('MetaDrive-Waymo')['IQL']['success'] == (0.40, None)
  assert paper.table1('Car-Race') is None
  table = {'Car-Gather': {'DT': _cell([3.0], [0.0])}, 'Car-Race': {'DT': _cell([1.0], [0.0])}}
  md = results.to_markdown(table, {'Car-Gather': 2.0, 'Car-Race': 2.0},
                           paper={t: paper.printed(t) for t in table if paper.printed(t)})
  lines = md.splitlines()
  ours = lines.index(next(l for l in lines if l.startswith('| Car-Gather | 2 | c')))
  assert lines[ours + 1].startswith('| Car-Gather (paper) | | r ↑ | 5.6 ± 2.31 | 7.1 ± 1.52 |')
  assert lines[ours + 1].endswith('| 14.0 ± 1.98 |')  # As printed, trailing zero kept.
  assert lines[ours + 2].endswith('| 0.14 ± 0.04 |')
  assert 'Car-Race (paper)' not in md and 'Rows marked (paper)' in md
  assert 'Rows marked (paper)' not in results.to_markdown(table, {'Car-Gather': 2.0,
                                                                  'Car-Race': 2.0})


def test_success_rows_and_failed_runs(tmp_path):
  table = {'MetaDrive-Waymo': {'DT': _cell([100.0], [0.0], success=[1.0])}}
  md = results.to_markdown(table, {'MetaDrive-Waymo': 10.0}, with_success=['MetaDrive-Waymo'],
                           failed={'MetaDrive-Waymo/IQL/seed0': 'FloatingPointError: nan'})
  assert 'sr ↑' in md and 'FloatingPointError' in md
  path = tmp_path / 't.csv'
  results.to_csv(table, str(path))
  rows = list(csv.DictReader(open(path)))
  assert {r['metric'] for r in rows} == {'reward', 'cost', 'success'}
  np.testing.assert_allclose(float(rows[0]['mean']), 100.0)


def _row(task, method, seed, reward, cost):
  return {'task': task, 'method': method, 'seed': str(seed), 'reward': str(reward),
          'cost': str(cost), 'success': ''}


def test_verdicts_pair_seeds_and_count_only_answered_tasks():
  rows = [_row('A', 'GOLD(DT-IQL)', 0, 100, 5), _row('A', 'IQL', 0, 50, 0),
          _row('A', 'CVPO', 0, 80, 0), _row('A', 'DT', 0, 90, 20),
          _row('A', 'DT', 1, 500, 0),  # Seed 1 has no GOLD run: left out of the comparison.
          _row('B', 'GOLD(DT-IQL)', 0, 10, 30), _row('B', 'IQL', 0, 20, 0),
          _row('C', 'GOLD(DT-IQL)', 0, 10, 0)]  # C: no from-scratch run finished.
  text = results.verdicts(rows, {'A': 10, 'B': 10, 'C': 10, 'D': 10})
  lines = {l.split(' | ')[0][2:]: l for l in text.splitlines() if l.startswith('| ') and
           l[2] in 'ABCD'}
  assert set(lines) == {'A', 'B', 'C'}  # D has no GOLD run: no row.
  assert ('| yes: 5.00 | yes: 100.0 vs IQL 50.0 (cost 0.00), CVPO 80.0 (cost 0.00) '
          '| yes: IQL, CVPO within κ | yes: 100.0 vs 90.0') in lines['A']
  assert '| no: 30.00 | — | — |' in lines['B']  # CVPO missing on B: (b) unanswered.
  assert '| yes: 0.00 | — | — | — |' in lines['C']
  assert '(a) holds on 2 of 3 task(s). Of the 1 task(s)' in text
  assert '(b) holds on 1, (a) with (b) on 1, and (a) with (b\') on 1.' in text
  # An unsafe from-scratch method with more reward fails (b) but not (b').
  unsafe = rows[:2] + [_row('A', 'CVPO', 0, 400, 60)]
  line = next(l for l in results.verdicts(unsafe, {'A': 10}).splitlines() if l.startswith('| A'))
  assert '| no: 100.0 vs IQL 50.0 (cost 0.00), CVPO 400.0 (cost 60.00) | yes: IQL within κ |' in line


def test_curve_ends_windows():
  steps = np.arange(10_000, 200_001, 10_000)
  rising, flat = (steps, steps / 1000.0), (steps, np.full(steps.shape, 2.0))
  text = results.curve_ends({'up': [rising], 'flat': [flat, (steps, np.full(steps.shape, 4.0))]},
                            {'up': [flat]})
  up = next(l for l in text.splitlines() if l.startswith('| up '))
  # Last quarter: 160k..200k (mean 180); the quarter before: 110k..150k (mean 130).
  assert '| 180.0 ± 0.0 | 130.0 ± 0.0 | +50.0 | 2.0 ± 0.0 | 2.0 ± 0.0 |' in up
  flat_line = next(l for l in text.splitlines() if l.startswith('| flat '))
  assert '| 3.0 ± 1.0 | 3.0 ± 1.0 | +0.0 | — | — |' in flat_line
  with pytest.raises(ValueError, match='fraction'):
    results.curve_ends({}, {}, fraction=0.8)


def test_mixed_budgets_flags_only_online_runs_of_unequal_length():
  rows = [dict(_row('A', m, s, 1, 0), env_steps=steps) for m, s, steps in
          [('IQL', 0, '300000'), ('IQL', 1, '200000'), ('CVPO', 0, '200000'),
           ('DT', 0, '2000'), ('expert', 0, '')]]
  rows += [dict(_row('B', 'IQL', s, 1, 0), env_steps='200000') for s in (0, 1)]
  rows += [dict(_row('B', 'DT', 0, 1, 0), env_steps='')]
  assert results.mixed_budgets(rows) == {'A': {200000: 2, 300000: 1}}
  assert results.online_budgets(rows) == {'A': {200000: 2, 300000: 1}, 'B': {200000: 2}}
