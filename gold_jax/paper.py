"""The paper's Table I (Li et al., "Promoting Safe RL by Offline Demonstration", 2023), for
reporting our cells beside it.

Mean ± std as printed in the paper. The paper states neither its cost thresholds nor its episode
lengths, and its bullet tasks may use other episode lengths than bullet-safety-gym 1.4.0's
registrations, so a row of ours and the paper's are comparable in ranking, not in value.

  paper.table1('Car-Circle')['GOLD(DT-IQL)']  # {'reward': (688.3, 4.2), 'cost': (3.2, 1.5)}
  paper.printed('Car-Gather')['GOLD(DT-IQL)']  # {'reward': '14.0 ± 1.98', 'cost': ...}
"""

from typing import Dict, Optional, Tuple

METHODS = ('BC', 'DT', 'IQL', 'CVPO', 'GOLD(BC-IQL)', 'GOLD(DT-CVPO)', 'GOLD(DT-IQL)')

# task, metric, then one "mean ± std" (or "percent%") per method in METHODS' order.
_TABLE1 = """
Car-Circle      | r | 366.9 ± 10.4 | 450.3 ± 53.8 | 630.7 ± 26.4 | 502.5 ± 10.8 | 628.4 ± 20.6 | 613.7 ± 26.3 | 688.3 ± 4.2
Car-Circle      | c | 41.4 ± 5.3 | 40.4 ± 6.3 | 17.5 ± 2.8 | 7.4 ± 3.3 | 13.6 ± 1.4 | 3.9 ± 0.5 | 3.2 ± 1.5
Car-Gather      | r | 5.6 ± 2.31 | 7.1 ± 1.52 | 10.3 ± 1.22 | 10.2 ± 0.87 | 12.8 ± 2.63 | 11.9 ± 0.44 | 14.0 ± 1.98
Car-Gather      | c | 0.42 ± 0.17 | 0.38 ± 0.16 | 0.23 ± 0.12 | 0.18 ± 0.04 | 0.19 ± 0.27 | 0.15 ± 0.02 | 0.14 ± 0.04
Point-Goal      | r | 19.2 ± 1.4 | 24.1 ± 0.5 | 31.6 ± 3.2 | 32.1 ± 5.3 | 32.1 ± 5.8 | 31.4 ± 3.8 | 33.9 ± 6.5
Point-Goal      | c | 16.7 ± 2.4 | 15.2 ± 4.6 | 10.5 ± 3.9 | 8.5 ± 1.4 | 8.0 ± 3.8 | 11.5 ± 2.9 | 8.3 ± 1.3
Point-Button    | r | 23.7 ± 5.2 | 27.8 ± 4.2 | 35.1 ± 4.7 | 38.2 ± 2.4 | 41.1 ± 3.1 | 39.2 ± 2.4 | 44.8 ± 3.1
Point-Button    | c | 18.5 ± 5.9 | 17.3 ± 2.5 | 8.4 ± 2.1 | 7.5 ± 2.8 | 6.2 ± 4.2 | 6.8 ± 2.9 | 6.5 ± 1.1
Point-Push      | r | 2.1 ± 3.2 | 4.6 ± 2.1 | 5.3 ± 1.0 | 2.5 ± 0.3 | 6.6 ± 1.6 | 4.2 ± 1.1 | 8.0 ± 2.3
Point-Push      | c | 50.2 ± 8.1 | 45.4 ± 5.8 | 34.1 ± 9.1 | 19.3 ± 4.2 | 24.3 ± 3.8 | 18.3 ± 4.5 | 20.4 ± 6.9
Car-Goal        | r | 13.2 ± 1.7 | 16.4 ± 3.4 | 22.8 ± 1.3 | 19.8 ± 1.9 | 27.9 ± 2.1 | 28.4 ± 1.2 | 30.5 ± 5.4
Car-Goal        | c | 53.4 ± 2.1 | 49.9 ± 6.3 | 20.4 ± 5.2 | 24.3 ± 6.6 | 14.6 ± 2.6 | 12.2 ± 4.1 | 10.8 ± 3.2
Car-Button      | r | 19.6 ± 2.2 | 26.5 ± 3.7 | 28.9 ± 10.4 | 27.1 ± 3.8 | 36.1 ± 3.0 | 30.5 ± 3.8 | 42.0 ± 2.6
Car-Button      | c | 34.1 ± 10.5 | 20.8 ± 9.3 | 12.5 ± 6.8 | 8.8 ± 1.3 | 9.8 ± 5.0 | 7.1 ± 4.3 | 6.5 ± 6.1
Car-Push        | r | 1.5 ± 0.1 | 2.6 ± 0.2 | 3.8 ± 1.1 | 3.0 ± 0.4 | 4.5 ± 0.2 | 4.2 ± 0.2 | 5.1 ± 0.4
Car-Push        | c | 65.3 ± 9.8 | 58.9 ± 11.6 | 23.3 ± 2.9 | 19.3 ± 5.8 | 19.4 ± 1.9 | 15.7 ± 2.3 | 17.4 ± 1.1
MetaDrive-Waymo | r | 115.78 ± 132.89 | 133.48 ± 190.50 | 26.29 ± 68.82 | 113.48 ± 163.84 | 141.93 ± 189.54 | 115.66 ± 163.18 | 143.69 ± 175.98
MetaDrive-Waymo | c | 1.14 ± 1.96 | 1.25 ± 1.92 | 2.57 ± 2.36 | 1.05 ± 1.84 | 1.03 ± 1.85 | 1.25 ± 2.07 | 1.15 ± 2.05
MetaDrive-Waymo | s | 53% | 54% | 40% | 58% | 63% | 62% | 73%
"""

_METRICS = {'r': 'reward', 'c': 'cost', 's': 'success'}


def _parse(value: str) -> Tuple[float, Optional[float]]:
  value = value.strip()
  if value.endswith('%'):
    return float(value[:-1]) / 100.0, None
  mean, std = value.split('±')
  return float(mean), float(std)


def _cells() -> Dict[str, Dict[str, Dict[str, str]]]:
  table: Dict[str, Dict[str, Dict[str, str]]] = {}
  for line in _TABLE1.strip().splitlines():
    task, metric, *values = (part.strip() for part in line.split('|'))
    if len(values) != len(METHODS):
      raise ValueError(f'paper Table I row {task} {metric} has {len(values)} values')
    cells = table.setdefault(task, {})
    for method, value in zip(METHODS, values):
      cells.setdefault(method, {})[_METRICS[metric]] = value
  return table


PRINTED = _cells()  # {task: {method: {metric: the cell as printed}}}.
TABLE1 = {task: {method: {metric: _parse(value) for metric, value in cell.items()}
                 for method, cell in cells.items()} for task, cells in PRINTED.items()}


def table1(task: str) -> Optional[Dict[str, Dict[str, Tuple[float, Optional[float]]]]]:
  """The paper's cells of `task`: {method: {'reward' | 'cost' | 'success': (mean, std)}}
  (success as a fraction, its std None); None for a task the paper does not report."""
  return TABLE1.get(task)


def printed(task: str) -> Optional[Dict[str, Dict[str, str]]]:
  """The paper's cells of `task` as printed ('14.0 ± 1.98', '73%'), for tables."""
  return PRINTED.get(task)
