"""A driving study over several seeds, pooled: rates over seeds x held-out scenarios.

Every seed's study (`gold_jax.studies.driving`, one directory per seed) scores each method once
per held-out scenario (`eval/<method>.json`). Pooled here, per method:
- success, crash and out-of-road rates over all seeds x scenarios, each with its 95% Wilson
  score interval (Wilson 1927), which stays inside [0, 1] and is honest at 0 or n successes;
- reward and cost as the mean ± std over the per-seed means;
- the per-seed means themselves.
The seeds must share one held-out set (same scenarios in the same order, e.g. one `split_seed`);
directories whose held-out sets differ are refused, since their rates would not pool.

Writes `runs.csv` (the columns of the Table I per-run file, `episodes` = held-out scenarios,
then crash and out-of-road rates) and `table.md`.
"""

import math
import os
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from gold_jax import files, protocol, results
from gold_jax.driving import evaluate as driving_eval

TASK = driving_eval.TASK
RATES = ('success', 'crash', 'out_of_road')
EXTRA_COLUMNS = ('crash', 'out_of_road')


def wilson(successes: int, n: int, z: float = 1.959964) -> Tuple[float, float]:
  """The Wilson score interval of a binomial proportion (95% by default)."""
  if n <= 0:
    raise ValueError(f'need at least one trial, got {n}')
  if not 0 <= successes <= n:
    raise ValueError(f'successes must be in [0, {n}], got {successes}')
  p = successes / n
  denominator = 1 + z * z / n
  centre = (p + z * z / (2 * n)) / denominator
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
  return max(0.0, centre - half), min(1.0, centre + half)


def _seed_results(workdir: str, held_out: str = 'test') -> Dict[str, Any]:
  summary = files.read_json(os.path.join(workdir, 'results.json'))
  if summary is None:
    raise FileNotFoundError(f'{workdir}: no results.json (has the study finished?)')
  if held_out == 'test':
    scenarios, rows = summary['split']['test'], summary['rows']
    episode_len = summary.get('episode_len', 0)
  elif summary.get(held_out):
    scenarios, rows = summary[held_out], summary[held_out]['rows']
    episode_len = summary[held_out]['episode_len']
  else:
    raise FileNotFoundError(f'{workdir}: no held-out set {held_out!r} in results.json')
  evals = {}
  for row in rows:
    name = row['method']
    path = eval_path(workdir, name, held_out)
    evals[name] = files.read_json(path)
    if evals[name] is None:
      raise FileNotFoundError(f'{path}: missing')
  return {'seed': int(summary['config']['seed']), 'files': scenarios['files'],
          'ids': scenarios['ids'], 'evals': evals, 'episode_len': episode_len}


def eval_path(workdir: str, method: str, held_out: str = 'test') -> str:
  """Where a per-seed study keeps a method's evaluation on a held-out set: `eval/<method>.json`
  for the test part of its split, `eval_<held_out>/<method>.json` for another set."""
  name = ''.join(c if c.isalnum() else '_' for c in method).strip('_').lower()
  folder = 'eval' if held_out == 'test' else f'eval_{held_out}'
  return os.path.join(workdir, folder, name + '.json')


def pool(workdirs: Sequence[str], out_dir: str, held_out: str = 'test') -> Dict[str, Any]:
  """Pools the finished per-seed studies in `workdirs` on one held-out set; writes runs.csv and
  table.md (`runs_<held_out>.csv` and `table_<held_out>.md` for a set other than 'test')."""
  seeds = [_seed_results(w, held_out) for w in workdirs]
  if any(s['files'] != seeds[0]['files'] for s in seeds[1:]):
    raise ValueError('the seeds were scored on different held-out scenarios; run them with one '
                     '--split_seed so that their rates pool')
  ids = seeds[0]['ids']
  eval_id = protocol.eval_set(TASK, seeds[0]['episode_len'], 0, 0, ids).id
  methods = [m for m in seeds[0]['evals'] if all(m in s['evals'] for s in seeds)]
  run_rows, table = [], []
  for method in methods:
    per_seed = []
    outcomes = {rate: [] for rate in RATES}
    for s in seeds:
      episodes = s['evals'][method]['scenarios']
      means = {key: float(np.mean([e[key] for e in episodes]))
               for key in ('reward', 'cost') + RATES}
      per_seed.append(dict(means, seed=s['seed']))
      for rate in RATES:
        outcomes[rate] += [bool(e[rate]) for e in episodes]
      row = results.run_row(TASK, method, s['seed'], {
          'reward': means['reward'], 'cost': means['cost'], 'success': means['success'],
          'episodes': len(episodes), 'eval_set': eval_id})
      row.update({k: f'{means[k]:.6g}' for k in EXTRA_COLUMNS})
      run_rows.append(row)
    entry = {'method': method, 'seeds': len(seeds), 'episodes': len(outcomes['success']),
             'per_seed': per_seed}
    for key in ('reward', 'cost'):
      entry[key] = results.mean_std([p[key] for p in per_seed])
    for rate in RATES:
      k, n = sum(outcomes[rate]), len(outcomes[rate])
      entry[rate] = (k / n, *wilson(k, n))
    table.append(entry)
  os.makedirs(out_dir, exist_ok=True)
  suffix = '' if held_out == 'test' else f'_{held_out}'
  results.write_runs_csv(run_rows, os.path.join(out_dir, f'runs{suffix}.csv'),
                         extra=EXTRA_COLUMNS)
  markdown = to_markdown(table, ids)
  files.write_text(os.path.join(out_dir, f'table{suffix}.md'), markdown)
  return {'rows': table, 'markdown': markdown, 'eval_set': eval_id}


def to_markdown(table: Sequence[Mapping[str, Any]], test_ids: Sequence[str]) -> str:
  """The pooled table: rates with 95% Wilson intervals, reward and cost mean ± std over seeds,
  and the per-seed success rates."""
  n_seeds = table[0]['seeds'] if table else 0
  lines = [f'{len(test_ids)} held-out scenarios x {n_seeds} seeds per method; rates pooled over '
           'seeds x scenarios with 95% Wilson intervals; reward and cost: mean ± std of the '
           'per-seed means.', '',
           '| method | reward | cost | success | crash | out of road | success per seed |',
           '|---|---|---|---|---|---|---|']
  for r in table:
    rate = lambda key: f'{r[key][0]:.2f} [{r[key][1]:.2f}, {r[key][2]:.2f}]'
    per_seed = ', '.join(f'{p["success"]:.2f}' for p in r['per_seed'])
    lines.append(f'| {r["method"]} | {r["reward"][0]:.1f} ± {r["reward"][1]:.1f} | '
                 f'{r["cost"][0]:.2f} ± {r["cost"][1]:.2f} | {rate("success")} | '
                 f'{rate("crash")} | {rate("out_of_road")} | {per_seed} |')
  return '\n'.join(lines) + '\n'
