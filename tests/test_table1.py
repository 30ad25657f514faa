"""The Table I study (`gold_jax.studies.table1`) end to end at smoke scale: every method, table, curves, reruns."""

import dataclasses
import json
import os
import shutil

import pytest

from gold_jax.studies import table1
from gold_jax import results


@pytest.fixture(scope='module')
def sweep(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('table1'))
  config = table1.Config(tasks=('Car-Circle',), seeds=1, scale='smoke')
  return config, workdir, table1.run(config, workdir)


def test_smoke_sweep_fills_every_cell(sweep):
  config, workdir, out = sweep
  assert not out['failed']
  rows = results.read_runs_csv(os.path.join(workdir, 'runs.csv'))
  table = results.table_from_rows(rows, config.tasks, results.METHODS)
  for method in results.METHODS:
    assert table['Car-Circle'][method].seeds == 1, method
  # One row per run, the expert included, every method scored on the same evaluation set.
  assert sorted(r['method'] for r in rows) == sorted(results.METHODS + (results.EXPERT,))
  assert len({r['eval_set'] for r in rows}) == 1 and len(rows[0]['eval_set']) == 8
  assert {r['episodes'] for r in rows} == {'3'}  # The smoke preset's final evaluation.
  assert all(r['success'] == '' for r in rows)  # Car-Circle defines no success.
  md = open(os.path.join(workdir, 'table1.md')).read()
  assert all(m in md for m in results.METHODS) and '—' not in md.split('\n\n')[0]
  assert 'Verdict for GOLD(DT-IQL)' in md and 'Of the 1 task(s) where every from-scratch' in md
  assert 'Curve ends' in md and '| GOLD(DT-IQL) | 1 |' in md
  assert '| Car-Circle (paper) | | r ↑ | 366.9 ± 10.4 |' in md
  assert 'Our budgets: Car-Circle: episodes of 20 steps, 120 online env steps.' in md
  assert 'The `paper` scale runs 300,000 online env steps per run.' in md
  assert os.path.getsize(os.path.join(workdir, 'curves_Car-Circle.png')) > 0
  assert os.path.exists(os.path.join(workdir, 'table1.csv'))
  # Every run of this invocation (expert, 2 guides, 5 online) is timed; one worker runs them
  # one after another.
  timing = open(os.path.join(workdir, 'timing.md')).read()
  assert timing.startswith('8 runs') and '1 worker' in timing, timing
  speedup = float(timing.rsplit(' ', 1)[-1].rstrip('x\n'))
  assert 0.5 < speedup <= 1.01, timing
  assert table1.parallel_timing(config, workdir, since=2e9) == ''  # No run after that time.


def test_report_of_a_method_subset_keeps_the_guide(sweep, tmp_path):
  """A sweep of GOLD(DT-IQL) alone still reports its DT guide's runs (for the verdict)."""
  config, workdir, _ = sweep
  copy = str(tmp_path / 'copy')
  shutil.copytree(workdir, copy)
  subset = dataclasses.replace(config, methods=('GOLD(DT-IQL)', 'IQL'), report_only=True)
  md = table1.run(subset, copy)['table']
  rows = results.read_runs_csv(os.path.join(copy, 'runs.csv'))
  assert sorted(r['method'] for r in rows) == ['DT', 'GOLD(DT-IQL)', 'IQL', results.EXPERT]
  assert '| CVPO |' not in md.split('\n\n')[0]  # The table's columns are the asked methods.
  assert '(c) reward or cost better than DT' in md


def test_table_joins_the_rows_of_committed_runs_csv(sweep, tmp_path):
  """A report over tasks run in other workdirs: their committed runs.csv rows fill the cells
  this workdir lacks, and its own runs win where both have a cell."""
  config, workdir, _ = sweep
  other = str(tmp_path / 'other.csv')
  theirs = [dict(row, task='Point-Goal', reward='12.5') for row in
            results.read_runs_csv(os.path.join(workdir, 'runs.csv'))]
  theirs.append(dict(theirs[0], task='Car-Circle', reward='-99'))  # Also run here: not used.
  results.write_runs_csv(theirs, other)
  copy = str(tmp_path / 'copy')
  shutil.copytree(workdir, copy)
  joined = dataclasses.replace(config, tasks=('Car-Circle', 'Point-Goal'), report_only=True,
                               runs_csv=(other,))
  md = table1.run(joined, copy)['table']
  rows = results.read_runs_csv(os.path.join(copy, 'runs.csv'))
  assert len(rows) == 2 * len(theirs) - 2
  assert {r['reward'] for r in rows if r['task'] == 'Point-Goal'} == {'12.5'}
  assert '-99' not in {r['reward'] for r in rows}
  assert '| Point-Goal (paper) |' in md and '12.50 ± 0.00' in md
  with pytest.raises(ValueError, match='missing.csv: no such runs.csv'):
    table1.run(dataclasses.replace(joined, runs_csv=(str(tmp_path / 'missing.csv'),)), copy)


def test_committed_expert_policies_replace_training(sweep, tmp_path):
  config, workdir, _ = sweep
  exported = os.path.join(workdir, 'experts', 'Car-Circle_seed0.npz')
  assert 0 < os.path.getsize(exported) < 100_000  # The small file a sweep commits.
  again = table1.Config(tasks=('Car-Circle',), seeds=1, scale='smoke', methods=(),
                        expert_policies=os.path.dirname(exported))
  table1.run(again, str(tmp_path))
  first = results.read_runs_csv(os.path.join(workdir, 'runs.csv'))
  second = results.read_runs_csv(os.path.join(str(tmp_path), 'runs.csv'))
  expert = lambda rows: [r for r in rows if r['method'] == results.EXPERT][0]
  assert expert(second)['eval_set'] == expert(first)['eval_set']
  for key in ('reward', 'cost'):
    assert float(expert(second)[key]) == pytest.approx(float(expert(first)[key]), abs=1e-3)
  assert not os.path.exists(os.path.join(str(tmp_path), 'Car-Circle', 'seed0', 'expert',
                                         'checkpoints'))  # Recorded, not retrained.


def test_rerun_reuses_results_and_marks_failures(sweep):
  config, workdir, _ = sweep
  # A failed cell: its result is removed and an error recorded; the table marks it missing.
  cell = os.path.join(workdir, 'Car-Circle', 'seed0', 'cvpo')
  os.rename(os.path.join(cell, 'result.json'), os.path.join(cell, 'result.bak'))
  with open(os.path.join(cell, 'error.txt'), 'w') as f:
    f.write('Traceback ...\nFloatingPointError: non-finite values in loss/policy\n')
  out = table1.write_report(config, workdir)
  assert 'Car-Circle/seed0/CVPO' in out['failed']
  assert 'FloatingPointError' in out['table']
  methods = [r['method'] for r in results.read_runs_csv(os.path.join(workdir, 'runs.csv'))]
  assert 'CVPO' not in methods and 'GOLD(DT-IQL)' in methods
  os.rename(os.path.join(cell, 'result.bak'), os.path.join(cell, 'result.json'))
  # The same workdir with another budget or guide kind would mix runs: refused.
  with pytest.raises(ValueError, match='dt_cost_token'):
    table1.run(dataclasses.replace(config, dt_cost_token=True), workdir)
  with pytest.raises(ValueError, match="lambda_rule: 'fixed' -> 'pid'"):
    table1.run(dataclasses.replace(config, lambda_rule='pid'), workdir)
  with pytest.raises(ValueError, match="scale: 'smoke' -> 'laptop'"):
    table1.run(dataclasses.replace(config, scale='laptop'), workdir)
  # A sweep scored under an earlier evaluation protocol is refused, not mixed.
  other = str(os.path.join(workdir, 'old'))
  os.makedirs(other)
  with open(os.path.join(other, 'sweep.json'), 'w') as f:
    f.write('{"scale": "smoke", "dt_cost_token": false, "lambda_rule": "fixed"}')
  with pytest.raises(ValueError, match='eval_protocol: 1 -> 2'):
    table1.run(config, other)
  # A rerun finds every result and trains nothing (fast); report_only never trains.
  assert not table1.run(config, workdir)['failed']
  only = table1.run(table1.Config(tasks=('Car-Circle',), seeds=2, scale='smoke',
                                  report_only=True), workdir)
  assert not os.path.exists(os.path.join(workdir, 'Car-Circle', 'seed1'))
  assert 'seeds per cell: 1' in only['table']


def test_bad_input():
  with pytest.raises(ValueError, match='Known tasks|known tasks'):
    table1.run(table1.Config(tasks=('No-Such-Task',)), '/nonexistent')
  with pytest.raises(ValueError, match='unknown methods'):
    table1.run(table1.Config(tasks=('Car-Circle',), methods=('PPO',)), '/nonexistent')


def test_dt_guides_conditioned_on_cost_to_go(tmp_path):
  config = table1.Config(tasks=('Car-Circle',), seeds=1, scale='smoke', methods=('DT',),
                         dt_cost_token=True)
  out = table1.run(config, str(tmp_path))
  assert not out['failed']
  from gold_jax.policies import load_guide
  guide = load_guide(str(tmp_path / 'Car-Circle' / 'seed0' / 'dt'))
  assert guide.state.config.use_cost_token
  assert guide.target_cost == 10.0  # Car-Circle's kappa.


def test_more_online_steps_extend_finished_runs(sweep, tmp_path):
  """--online_steps above the scale's: finished online runs resume from their last checkpoint
  to the new budget, keeping their curve and run time; a smaller budget is refused."""
  config, workdir, _ = sweep
  copy = str(tmp_path / 'copy')
  shutil.copytree(workdir, copy)
  cell = os.path.join(copy, 'Car-Circle', 'seed0', 'iql')
  before = json.load(open(os.path.join(cell, 'result.json')))
  metrics = os.path.join(cell, 'metrics.csv')
  lines = open(metrics).read().splitlines()
  rows_before = len(lines)
  # A marker in the logged curve: a resumed run keeps the rows up to its checkpoint.
  lines[1] = lines[1].split(',', 1)[0] + ',' + ','.join(['12345'] * (len(lines[1].split(',')) - 1))
  open(metrics, 'w').write('\n'.join(lines) + '\n')
  expert_before = os.path.getmtime(os.path.join(copy, 'Car-Circle', 'seed0', 'expert',
                                                'result.json'))
  longer = dataclasses.replace(config, methods=('IQL',), online_steps=240)  # Smoke: 120.
  table1.run(longer, copy)
  after = json.load(open(os.path.join(cell, 'result.json')))
  assert before['env_steps'] == 120 and after['env_steps'] == 240
  assert after['seconds_before'] == pytest.approx(before['seconds'])
  lines = open(metrics).read().splitlines()
  assert lines[1].endswith(',12345')  # Resumed from step 120, not run again from 0.
  steps = [int(l.split(',')[0]) for l in lines[1:]]
  assert len(steps) > rows_before - 1 and max(steps) == 240 and 120 in steps
  assert steps == sorted(set(steps))
  assert os.path.getmtime(os.path.join(copy, 'Car-Circle', 'seed0', 'expert',
                                       'result.json')) == expert_before  # Not rerun.
  row = [r for r in results.read_runs_csv(os.path.join(copy, 'runs.csv'))
         if r['method'] == 'IQL'][0]
  assert float(row['env_steps']) == 240
  assert float(row['seconds']) == pytest.approx(after['seconds'] + before['seconds'], rel=1e-4)
  assert json.load(open(os.path.join(copy, 'sweep.json')))['online_steps'] == 240
  with pytest.raises(ValueError, match='extended, not shortened'):
    table1.run(dataclasses.replace(longer, online_steps=0), copy)
  with pytest.raises(ValueError, match='online_steps'):
    table1.run(dataclasses.replace(longer, online_steps=-1), copy)


def test_budgets_against_paper_come_from_the_runs():
  config = table1.Config(tasks=('Car-Circle', 'Point-Goal'), scale='laptop')
  line = table1._budgets_against_paper(config, ['Car-Circle', 'Point-Goal'],
                                       {'Car-Circle': {300_000: 2, 200_000: 1}})
  assert 'Car-Circle: episodes of 300 steps, 200,000 to 300,000 online env steps' in line
  assert 'Point-Goal: episodes of 1000 steps, 20,000 online env steps' in line  # No runs yet.
  assert line.endswith('The `paper` scale runs 300,000 online env steps per run.\n')
