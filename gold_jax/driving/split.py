"""Train/test splits by scenario, deterministic and independent of listing order.

`split_names` ranks scenarios by a seeded hash of their name and puts the first
`round(test_fraction * n)` in the test set (at least one of each when `n >= 2` and the fraction
is strictly between 0 and 1). `write_split` materialises a split as two ScenarioNet directories
whose `dataset_mapping.pkl` points back at the original files, so nothing is copied.
`index_split` gives contiguous index ranges as `make_metadrive` options.
"""

import hashlib
import os
import pathlib
import pickle
from typing import Dict, List, Sequence, Tuple

from gold_jax.envs import metadrive as md
from gold_jax.envs import scenarionet_writer


def _rank(name: str, seed: int) -> str:
  return hashlib.sha256(f'{seed}:{name}'.encode()).hexdigest()


def split_names(names: Sequence[str], test_fraction: float = 0.2, seed: int = 0
                ) -> Tuple[List[str], List[str]]:
  """Returns `(train, test)`, each in the order of `names`; disjoint and covering `names`."""
  if not 0.0 <= test_fraction <= 1.0:
    raise ValueError(f'test_fraction must be in [0, 1], got {test_fraction}')
  if len(set(names)) != len(names):
    raise ValueError('scenario names must be unique')
  n = len(names)
  n_test = int(round(test_fraction * n))
  if n >= 2 and 0.0 < test_fraction < 1.0:
    n_test = min(max(n_test, 1), n - 1)
  test = set(sorted(names, key=lambda name: _rank(name, seed))[:n_test])
  return [x for x in names if x not in test], [x for x in names if x in test]


def index_split(num_scenarios: int, test_fraction: float = 0.2) -> Tuple[Dict, Dict]:
  """`make_metadrive` options for the first and last part of a scenario index range."""
  if num_scenarios < 2:
    raise ValueError(f'need at least 2 scenarios to split, got {num_scenarios}')
  num_test = min(max(int(round(test_fraction * num_scenarios)), 1), num_scenarios - 1)
  num_train = num_scenarios - num_test
  return (dict(start_scenario_index=0, num_scenarios=num_train),
          dict(start_scenario_index=num_train, num_scenarios=num_test))


def write_split(data_dir, out_dir, test_fraction: float = 0.2, seed: int = 0
                ) -> Dict[str, pathlib.Path]:
  """Writes `out_dir/train` and `out_dir/test`: ScenarioNet directories over `data_dir`'s files."""
  names = [p.name for p in md.scenario_files(pathlib.Path(data_dir).resolve())]
  train, test = split_names(names, test_fraction, seed)
  return write_parts(data_dir, out_dir, {'train': train, 'test': test})


def write_parts(data_dir, out_dir, parts: Dict[str, List[str]]) -> Dict[str, pathlib.Path]:
  """ScenarioNet directories `out_dir/<part>` listing the scenario files `parts[part]` of
  `data_dir` (mapping and summary only: the scenario files are not copied)."""
  data_dir = pathlib.Path(data_dir).resolve()
  with open(data_dir / md.SUMMARY_FILE, 'rb') as f:
    summary = pickle.load(f)
  folders = {p.name: p.parent for p in md.scenario_files(data_dir)}
  result = {}
  for part, names in parts.items():
    target = pathlib.Path(out_dir) / part
    target.mkdir(parents=True, exist_ok=True)
    mapping = {n: os.path.relpath(folders[n], target.resolve()) for n in names}
    scenarionet_writer.atomic_pickle(mapping, target / md.MAPPING_FILE)
    scenarionet_writer.atomic_pickle({n: summary[n] for n in names}, target / md.SUMMARY_FILE)
    result[part] = target
  return result
