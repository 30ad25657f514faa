"""Aggregating finished runs into the paper's Table I layout (Markdown and CSV).

Every finished run is one row of `runs.csv` (`RUN_COLUMNS`: task, method, seed, reward, cost,
success, episodes, eval_set, ...); the tables are computed from those rows. `eval_set` is the
`gold_jax.protocol.EvalSet` id of the episodes the run was scored on: within a (task, seed)
every method should show the same one (`mixed_eval_sets` lists the ones that do not).

Rows are tasks; for each method the table shows episode reward r (higher is better), episode
cost c (lower is better) and, for driving tasks, success rate sr, each as mean ± std over seeds.
In each row the best reward among the methods whose mean cost stays within the task's
threshold κ is bold, and so is the lowest cost. A cell with no finished seed shows `—`.
"""

import csv
import dataclasses
import io
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from gold_jax.files import atomic_open, write_text

METHODS = ('BC', 'DT', 'IQL', 'CVPO', 'GOLD(BC-IQL)', 'GOLD(DT-CVPO)', 'GOLD(DT-IQL)')
OFFLINE = ('BC', 'DT')
EXPERT = 'expert'  # Method name of the demonstrating expert in runs.csv.
RUN_COLUMNS = ('task', 'method', 'seed', 'reward', 'cost', 'success', 'episodes', 'eval_set',
               'env_steps', 'seconds')


@dataclasses.dataclass
class Cell:
  """Per-seed final evaluation results of one method on one task."""
  reward: List[float] = dataclasses.field(default_factory=list)
  cost: List[float] = dataclasses.field(default_factory=list)
  success: List[float] = dataclasses.field(default_factory=list)

  def add(self, result: Mapping[str, float]) -> None:
    self.reward.append(float(result['reward']))
    self.cost.append(float(result['cost']))
    if result.get('success') is not None:
      self.success.append(float(result['success']))

  @property
  def seeds(self) -> int:
    return len(self.reward)


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
  """Mean and population std; NaN for an empty list."""
  if not values:
    return math.nan, math.nan
  arr = np.asarray(values, np.float64)
  return float(arr.mean()), float(arr.std())


def _fmt(values: Sequence[float], bold: bool, digits: int = 2) -> str:
  if not values:
    return '—'
  m, s = mean_std(values)
  text = f'{m:.{digits}f} ± {s:.{digits}f}'
  return f'**{text}**' if bold else text


def best_methods(cells: Mapping[str, Cell], kappa: float) -> Tuple[Optional[str], Optional[str]]:
  """(method with the best reward among those with mean cost <= kappa, lowest-cost method)."""
  done = {m: c for m, c in cells.items() if c.seeds}
  safe = {m: c for m, c in done.items() if mean_std(c.cost)[0] <= kappa}
  best_r = max(safe, key=lambda m: mean_std(safe[m].reward)[0]) if safe else None
  best_c = min(done, key=lambda m: mean_std(done[m].cost)[0]) if done else None
  return best_r, best_c


def to_markdown(table: Mapping[str, Mapping[str, Cell]], kappas: Mapping[str, float],
                methods: Sequence[str] = METHODS, with_success: Sequence[str] = (),
                failed: Mapping[str, str] = None,
                paper: Mapping[str, Mapping[str, Mapping[str, str]]] = None) -> str:
  """Markdown table: one row per (task, metric), one column per method. With `paper`
  ({task: `gold_jax.paper.printed(task)`}), the paper's rows of a task follow ours."""
  out = io.StringIO()
  out.write('| task | κ | metric | ' + ' | '.join(methods) + ' |\n')
  out.write('|---|---|---|' + '---|' * len(methods) + '\n')
  for task, cells in table.items():
    best_r, best_c = best_methods({m: cells.get(m, Cell()) for m in methods}, kappas[task])
    metrics = [('r ↑', 'reward', best_r), ('c ↓', 'cost', best_c)]
    if task in with_success:
      metrics.append(('sr ↑', 'success', None))
    for label, field, best in metrics:
      row = [_fmt(getattr(cells.get(m, Cell()), field), m == best) for m in methods]
      out.write(f'| {task} | {kappas[task]:g} | {label} | ' + ' | '.join(row) + ' |\n')
    theirs = (paper or {}).get(task)
    if theirs:
      for label, field, _ in metrics:
        row = [theirs.get(m, {}).get(field, '') for m in methods]
        out.write(f'| {task} (paper) | | {label} | ' + ' | '.join(row) + ' |\n')
  seeds = sorted({c.seeds for cells in table.values() for c in cells.values() if c.seeds})
  out.write(f'\nMean ± std over seeds (seeds per cell: {", ".join(map(str, seeds)) or "none"}). '
            'Bold: best reward among methods with mean cost ≤ κ, and lowest cost.\n')
  if paper and any(paper.get(task) for task in table):
    out.write('\nRows marked (paper): the paper\'s Table I as printed (mean ± std; its seeds, κ, '
              'episode lengths and online budgets are not stated).\n')
  if failed:
    out.write('\nFailed runs (their cells use the seeds that finished):\n')
    for name, err in sorted(failed.items()):
      out.write(f'- `{name}`: {err}\n')
  return out.getvalue()


def to_csv(table: Mapping[str, Mapping[str, Cell]], path: str) -> None:
  """Long-form CSV: task, method, metric, mean, std, seeds. Written atomically."""
  rows = []
  for task, cells in table.items():
    for method, cell in cells.items():
      for field in ('reward', 'cost', 'success'):
        values = getattr(cell, field)
        if values:
          m, s = mean_std(values)
          rows.append([task, method, field, f'{m:.6g}', f'{s:.6g}', len(values)])
  with atomic_open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['task', 'method', 'metric', 'mean', 'std', 'seeds'])
    writer.writerows(rows)


def _number(value) -> str:
  return '' if value is None or value == '' else f'{float(value):.6g}'


def run_row(task: str, method: str, seed: int, result: Mapping) -> Dict[str, str]:
  """One `runs.csv` row from a run's result dict (`reward`, `cost`, optional `success`,
  `episodes`, `eval_set`, `env_steps`, `seconds`, and for an extended run the `seconds_before`
  the extension, which count in its run time); `success` stays empty where the task defines
  none."""
  episodes = result.get('episodes')
  return {'task': task, 'method': method, 'seed': str(int(seed)),
          'reward': _number(result['reward']), 'cost': _number(result['cost']),
          'success': _number(result.get('success')),
          'episodes': '' if episodes is None else str(int(episodes)),
          'eval_set': str(result.get('eval_set') or ''),
          'env_steps': _number(result.get('env_steps')),
          'seconds': _number(result['seconds'] + result.get('seconds_before', 0.0)
                             if result.get('seconds') is not None else None)}


def write_runs_csv(rows: Sequence[Mapping[str, str]], path: str, extra: Sequence[str] = ()
                   ) -> None:
  """Writes `runs.csv` (columns `RUN_COLUMNS`, then `extra`; rows sorted by task, method,
  seed), atomically."""
  columns = tuple(RUN_COLUMNS) + tuple(extra)
  out = io.StringIO()
  writer = csv.DictWriter(out, columns, lineterminator='\n')
  writer.writeheader()
  for row in sorted(rows, key=lambda r: (r['task'], r['method'], int(r['seed']))):
    writer.writerow({k: row.get(k, '') for k in columns})
  write_text(path, out.getvalue())


def read_runs_csv(path: str) -> List[Dict[str, str]]:
  """The rows of a `runs.csv`; a file without the protocol's columns is refused."""
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    missing = [c for c in RUN_COLUMNS[:8] if c not in (reader.fieldnames or ())]
    if missing:
      raise ValueError(f'{path} is not a runs.csv: columns {missing} are missing')
    return list(reader)


def table_from_rows(rows: Sequence[Mapping[str, str]], tasks: Sequence[str],
                    methods: Sequence[str]) -> Dict[str, Dict[str, Cell]]:
  """`{task: {method: Cell}}` of the per-run rows (every seed found)."""
  table = {t: {m: Cell() for m in methods} for t in tasks}
  for row in rows:
    if row['task'] in table and row['method'] in table[row['task']]:
      table[row['task']][row['method']].add(
          {'reward': row['reward'], 'cost': row['cost'],
           'success': row['success'] if row.get('success') not in (None, '') else None})
  return table


def mixed_eval_sets(rows: Sequence[Mapping[str, str]]) -> List[Tuple[str, int]]:
  """(task, seed) pairs whose runs were scored on more than one evaluation set."""
  sets: Dict[Tuple[str, int], set] = {}
  for row in rows:
    sets.setdefault((row['task'], int(row['seed'])), set()).add(row.get('eval_set', ''))
  return sorted(key for key, ids in sets.items() if len(ids) > 1)


def online_budgets(rows: Sequence[Mapping[str, str]]) -> Dict[str, Dict[int, int]]:
  """The env steps of each task's online runs (not the expert, not the offline guides), as
  {task: {env steps: runs}}."""
  budgets: Dict[str, Dict[int, int]] = {}
  for row in rows:
    if row['method'] in OFFLINE + (EXPERT,) or not row.get('env_steps'):
      continue
    steps, n = budgets.setdefault(row['task'], {}), int(float(row['env_steps']))
    steps[n] = steps.get(n, 0) + 1
  return budgets


def mixed_budgets(rows: Sequence[Mapping[str, str]]) -> Dict[str, Dict[int, int]]:
  """Tasks whose online runs ran for different numbers of env steps, as {task: {env steps:
  runs}}: the cells of such a task mix budgets, as while a sweep is extended with
  `--online_steps`."""
  return {task: steps for task, steps in online_budgets(rows).items() if len(steps) > 1}


def experts_markdown(rows: Sequence[Mapping[str, str]], kappas: Mapping[str, float]) -> str:
  """The demonstrating experts per task: reward / cost per seed, and whether mean cost ≤ κ."""
  lines = ['| task | κ | expert reward | expert cost | per seed (reward / cost) | safe seeds |',
           '|---|---|---|---|---|---|']
  for task in kappas:
    mine = sorted((r for r in rows if r['task'] == task and r['method'] == EXPERT),
                  key=lambda r: int(r['seed']))
    if not mine:
      continue
    reward = [float(r['reward']) for r in mine]
    cost = [float(r['cost']) for r in mine]
    per_seed = ', '.join(f'{a:.1f} / {c:.1f}' for a, c in zip(reward, cost))
    safe = sum(c <= kappas[task] for c in cost)
    lines.append(f'| {task} | {kappas[task]:g} | {_fmt(reward, False)} | {_fmt(cost, False)} '
                 f'| {per_seed} | {safe} of {len(mine)} |')
  if len(lines) == 2:
    return ''
  return ('Experts that recorded the demonstrations, on the same evaluation episodes:\n\n'
          + '\n'.join(lines) + '\n')


def curve_ends(reward_runs: Mapping[str, Sequence[Tuple[np.ndarray, np.ndarray]]],
               cost_runs: Mapping[str, Sequence[Tuple[np.ndarray, np.ndarray]]],
               fraction: float = 0.25) -> str:
  """Has each learning curve flattened? A Markdown table of the mean evaluation reward and cost
  over the last `fraction` of each run's env steps against the `fraction` before it (mean ± std
  over seeds of each seed's window mean), with the change in reward.

  `*_runs[method]` holds one `(steps, values)` curve per seed. A window is the curve points with
  `end - fraction·end < step ≤ end` (the one before: shifted by `fraction·end`), `end` being the
  seed's last logged step; a window without points gives NaN.
  """
  if not 0.0 < fraction <= 0.5:
    raise ValueError(f'fraction must be in (0, 0.5], got {fraction}')

  def window_means(curve, which):
    steps, values = (np.asarray(a, np.float64) for a in curve)
    if steps.size == 0:
      return math.nan
    end = steps.max()
    hi = end - which * fraction * end
    inside = (steps > hi - fraction * end) & (steps <= hi)
    return float(values[inside].mean()) if inside.any() else math.nan

  def cell(curves, which):
    m, s = mean_std([window_means(c, which) for c in curves])
    return m, f'{m:.1f} ± {s:.1f}'

  lines = ['| method | seeds | last steps | reward, last window | reward, window before | '
           'change | cost, last window | cost, window before |',
           '|---|---|---|---|---|---|---|---|']
  for method, curves in reward_runs.items():
    if not curves:
      continue
    (last, last_text), (before, before_text) = cell(curves, 0), cell(curves, 1)
    ends = sorted({int(np.max(c[0])) for c in curves if len(c[0])})
    costs = cost_runs.get(method, ())
    cost_texts = [cell(costs, w)[1] if costs else '—' for w in (0, 1)]
    lines.append(f'| {method} | {len(curves)} | {", ".join(map(str, ends))} '
                 f'| {last_text} | {before_text} | {last - before:+.1f} '
                 f'| {cost_texts[0]} | {cost_texts[1]} |')
  if len(lines) == 2:
    return ''
  pct = f'{fraction:.0%}'
  return (f'Curve ends: evaluation reward and cost over the last {pct} of env steps against the '
          f'{pct} before (curve points; mean ± std over seeds):\n\n' + '\n'.join(lines) + '\n')


def verdicts(rows: Sequence[Mapping[str, str]], kappas: Mapping[str, float],
             method: str = 'GOLD(DT-IQL)', scratch: Sequence[str] = ('IQL', 'CVPO'),
             guide: str = 'DT') -> str:
  """Does `method` (a) keep mean cost ≤ κ, (b) beat every `scratch` method in mean reward,
  (b') beat those `scratch` methods whose mean cost is ≤ κ in mean reward, (c) beat its
  `guide` in mean reward or mean cost? One Markdown row per task of `kappas`, on means over
  the seeds where `method` finished (the other methods' rows of other seeds are left out, so
  each comparison is paired); a question whose cells have no such seed is answered '—'
  and not counted. `rows` are `runs.csv` rows."""
  mine_seeds = {(r['task'], r['seed']) for r in rows if r['method'] == method}
  table = table_from_rows([r for r in rows if (r['task'], r['seed']) in mine_seeds],
                          list(kappas), (method, guide) + tuple(scratch))
  lines = [f'| task | κ | (a) cost ≤ κ | (b) reward > {", ".join(scratch)} | '
           "(b') reward > those of them within κ | "
           f'(c) reward or cost better than {guide} | seeds |', '|---|---|---|---|---|---|---|']
  held = {'a': 0, 'b': 0, 'ab': 0, 'b_safe': 0, 'answered': 0}
  for task, cells in table.items():
    mine = cells.get(method, Cell())
    if not mine.seeds:
      continue
    kappa = kappas[task]
    reward, cost = mean_std(mine.reward)[0], mean_std(mine.cost)[0]
    a = cost <= kappa
    others = {m: (mean_std(cells[m].reward)[0], mean_std(cells[m].cost)[0])
              for m in scratch if cells.get(m, Cell()).seeds}
    if len(others) == len(scratch):
      b = all(reward > r for r, _ in others.values())
      b_safe = all(reward > r for r, c in others.values() if c <= kappa)
      b_text = f'{"yes" if b else "no"}: {reward:.1f} vs ' + ', '.join(
          f'{m} {r:.1f} (cost {c:.2f})' for m, (r, c) in others.items())
      safe = [m for m, (_, c) in others.items() if c <= kappa]
      b_safe_text = f'{"yes" if b_safe else "no"}: ' + (', '.join(safe) or 'none') + ' within κ'
    else:
      b = b_safe = None
      b_text = b_safe_text = '—'
    ref = cells.get(guide, Cell())
    if ref.seeds:
      g_reward, g_cost = mean_std(ref.reward)[0], mean_std(ref.cost)[0]
      c = reward > g_reward or cost < g_cost
      c_text = (f'{"yes" if c else "no"}: {reward:.1f} vs {g_reward:.1f}, '
                f'cost {cost:.2f} vs {g_cost:.2f}')
    else:
      c_text = '—'
    seeds = sorted({cells[m].seeds for m in (method, guide, *scratch)
                    if cells.get(m, Cell()).seeds})
    lines.append(f'| {task} | {kappa:g} | {"yes" if a else "no"}: {cost:.2f} | {b_text} '
                 f'| {b_safe_text} | {c_text} | {", ".join(map(str, seeds))} |')
    held['a'] += a
    if b is not None:
      held['b'] += b
      held['ab'] += a and b
      held['b_safe'] += a and b_safe
      held['answered'] += 1
  tasks = len(lines) - 2
  if not tasks:
    return ''
  return (f'Verdict for {method} (means over the seeds where it finished):\n\n'
          + '\n'.join(lines) + '\n\n'
          f'(a) holds on {held["a"]} of {tasks} task(s). Of the {held["answered"]} task(s) where '
          f'every from-scratch method has finished those seeds, (b) holds on {held["b"]}, (a) with '
          f'(b) on {held["ab"]}, and (a) with (b\') on {held["b_safe"]}.\n')
