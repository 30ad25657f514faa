"""A driving corpus: hundreds to thousands of recorded procedural scenarios, in parallel.

    report = generate_corpus('data/corpus', 1000, seed=0, workers=8)

Scenario `i` is one episode of a MetaDrive procedural map, recorded at 10 Hz for `frames` frames
(91 like the Waymo Open Motion Dataset) with the ego driven by MetaDrive's IDM policy or its
shipped PPO expert, and written as a ScenarioNet scenario that `gold_jax.envs.metadrive`
replays like converted real-world data (`make_metadrive('waymo', data_dir=out_dir)`).

Everything about scenario `i` is drawn from `numpy.random.default_rng([seed, i])` (map seed,
then block count, then traffic density, within the given ranges) and recorded in a fresh
simulator, so the same call gives the same corpus and any scenario can be regenerated alone
(`generate_scenario`). A scenario whose ego crashes or leaves the road is dropped (its log is
not drivable) unless `keep_failed`; its index keeps a marker in `dropped/` so that a rerun does
not try it again, and indices are not renumbered: the corpus has fewer scenarios than asked.

Files: `sd_gold_procedural_v0_s<seed>_<i:06d>.pkl` per scenario, written atomically by the
worker that recorded it; `corpus.json` (the generation settings, written first);
`dataset_summary.pkl` and `dataset_mapping.pkl`, written last by the parent in index order.
A rerun skips every scenario already on disk (a readable pickle) or marked dropped, so an
interrupted run resumes; a directory made with other settings is refused.
"""

import dataclasses
import json
import multiprocessing
import os
import pathlib
import pickle
import sys
import time
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np

from gold_jax import errors
from gold_jax.envs import metadrive as md
from gold_jax.envs import scenarionet_writer as writer
from gold_jax.files import read_json, write_json

SETTINGS_FILE = 'corpus.json'
REPORT_FILE = 'corpus_report.json'
DROPPED_DIR = 'dropped'
FORMAT = 'gold_procedural_corpus/1'
MAP_SEED_LIMIT = 2**31 - 1  # Map seeds are drawn from [0, MAP_SEED_LIMIT).
# Settings that may differ between the runs that fill one directory.
MAY_DIFFER = ('num_scenarios', 'workers', 'progress')

Range = Union[float, Tuple[float, float], Sequence[float]]


@dataclasses.dataclass(frozen=True)
class Config:
  """Flags of `experiments/generate_corpus.py`."""
  out_dir: str = ''  # Corpus directory (created; a rerun resumes it).
  num_scenarios: int = 100  # Scenarios to generate (indices 0 .. n-1; dropped ones are not replaced).
  seed: int = 0  # Corpus seed: scenario i is drawn from numpy.random.default_rng([seed, i]).
  frames: int = 91  # Frames per scenario at 10 Hz (91 like WOMD): the reset plus frames-1 steps.
  workers: int = 1  # Processes recording in parallel (one MetaDrive engine each).
  traffic_density: Tuple[float, ...] = (0.05, 0.2)  # Traffic density range lo,hi (or one value).
  map_blocks: Tuple[int, ...] = (2, 5)  # Map block count range lo,hi (or one value).
  ego_policy: Literal['idm', 'expert'] = 'idm'  # Ego driver: MetaDrive's IDM, or its PPO expert.
  accident_prob: float = 0.0  # Probability of an accident scene (cones, broken car) per block.
  keep_failed: bool = False  # Keep scenarios whose ego crashes or leaves the road.
  progress: bool = True  # Show a progress bar.


@dataclasses.dataclass(frozen=True)
class ScenarioSpec:
  """What scenario `index` of a corpus with `seed` is made of (`scenario_spec`)."""
  index: int
  map_seed: int
  map_blocks: int
  traffic_density: float


@dataclasses.dataclass(frozen=True)
class CorpusReport:
  """What `generate_corpus` did. Counts cover the whole corpus (indices 0 .. n-1), `generated`
  only this run; `dropped` lists (index, reason, info key, step) of every dropped scenario."""
  out_dir: str
  num_scenarios: int
  written: int  # Scenarios in the corpus (listed in dataset_summary.pkl).
  generated: int  # Scenarios recorded by this run (written or dropped).
  reused: int  # Scenarios found on disk (or marked dropped) and not recorded again.
  dropped_crash: int
  dropped_out_of_road: int
  dropped: Tuple[Tuple[int, str, str, int], ...]
  failed_kept: int  # With keep_failed: scenarios written although their ego failed.
  seconds: float  # Wall time of this run.
  scenarios_per_minute: float  # Scenarios recorded (`generated`) per minute of this run.
  workers: int

  def to_dict(self) -> Dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(self)))

  def lines(self) -> List[str]:
    """The report for a person."""
    out = [f'corpus {self.out_dir}: {self.written} of {self.num_scenarios} scenarios written',
           f'  this run: {self.generated} recorded, {self.reused} already present, '
           f'{self.seconds:.1f} s with {self.workers} worker(s), '
           f'{self.scenarios_per_minute:.1f} scenarios/minute',
           f'  dropped: {self.dropped_crash} crash, {self.dropped_out_of_road} out of road']
    out += [f'    scenario {i}: {reason} ({key} at step {step})'
            for i, reason, key, step in self.dropped]
    if self.failed_kept:
      out.append(f'  kept although the ego failed: {self.failed_kept}')
    return out


# ---------------------------------------------------------------- settings


def _range(value, name: str, kind) -> Tuple[Any, Any]:
  if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
    values = (value,)
  else:
    values = tuple(value)
  if len(values) == 1:
    values = values * 2
  if len(values) != 2:
    raise ValueError(f'{name} must be one value or a (lo, hi) range, got {value!r}')
  lo, hi = kind(values[0]), kind(values[1])
  if kind is int and (lo != values[0] or hi != values[1]):
    raise ValueError(f'{name} must be integers, got {value!r}')
  if lo > hi:
    raise ValueError(f'{name}: lo {lo} > hi {hi}')
  return lo, hi


def corpus_settings(seed: int = 0, frames: int = 91, traffic_density: Range = (0.05, 0.2),
                    map_blocks: Union[int, Sequence[int]] = (2, 5), ego_policy: str = 'idm',
                    accident_prob: float = 0.0, keep_failed: bool = False) -> Dict[str, Any]:
  """The checked, normalised settings that define a corpus (what `corpus.json` records)."""
  seed, frames = int(seed), int(frames)
  if seed < 0:
    raise ValueError(f'seed must be >= 0, got {seed}')
  if frames < 2:
    raise ValueError(f'frames must be at least 2, got {frames}')
  density = _range(traffic_density, 'traffic_density', float)
  if density[0] < 0 or density[1] > 1:
    raise ValueError(f'traffic_density must lie in [0, 1], got {traffic_density!r}')
  blocks = _range(map_blocks, 'map_blocks', int)
  if blocks[0] < 1:
    raise ValueError(f'map_blocks must be >= 1, got {map_blocks!r}')
  if ego_policy not in writer.EGO_POLICIES:
    raise ValueError(f'ego_policy must be one of {writer.EGO_POLICIES}, got {ego_policy!r}')
  if not 0.0 <= float(accident_prob) <= 1.0:
    raise ValueError(f'accident_prob must lie in [0, 1], got {accident_prob}')
  return {'format': FORMAT, 'dataset': writer.DATASET_NAME, 'version': writer.DATASET_VERSION,
          'seed': seed, 'frames': frames, 'traffic_density': list(density),
          'map_blocks': list(blocks), 'ego_policy': ego_policy,
          'accident_prob': float(accident_prob), 'keep_failed': bool(keep_failed)}


def scenario_spec(seed: int, index: int, traffic_density: Range = (0.05, 0.2),
                  map_blocks: Union[int, Sequence[int]] = (2, 5)) -> ScenarioSpec:
  """Map seed, block count and traffic density of scenario `index`, drawn (in that order) from
  `numpy.random.default_rng([seed, index])` within the ranges (inclusive for blocks)."""
  density = _range(traffic_density, 'traffic_density', float)
  blocks = _range(map_blocks, 'map_blocks', int)
  rng = np.random.default_rng([int(seed), int(index)])
  map_seed = int(rng.integers(0, MAP_SEED_LIMIT))
  num_blocks = int(rng.integers(blocks[0], blocks[1] + 1))
  value = float(rng.uniform(density[0], density[1]))
  return ScenarioSpec(int(index), map_seed, num_blocks, value)


def scenario_id(seed: int, index: int) -> str:
  return f's{int(seed)}_{int(index):06d}'


def scenario_file_name(seed: int, index: int) -> str:
  """`sd_gold_procedural_v0_s<seed>_<index:06d>.pkl`: unique and stable per (seed, index)."""
  return f'sd_{writer.DATASET_NAME}_{writer.DATASET_VERSION}_{scenario_id(seed, index)}.pkl'


# ---------------------------------------------------------------- one scenario


def generate_scenario(index: int, seed: int = 0, frames: int = 91,
                      traffic_density: Range = (0.05, 0.2),
                      map_blocks: Union[int, Sequence[int]] = (2, 5), ego_policy: str = 'idm',
                      accident_prob: float = 0.0, keep_failed: bool = False
                      ) -> Tuple[str, Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
  """Records scenario `index` of the corpus these settings define, without writing anything.

  Returns (file name, scenario dict or None when dropped, failure or None); the scenario is
  the one `generate_corpus` writes for this index. Opens its own MetaDrive engine.
  """
  settings = corpus_settings(seed, frames, traffic_density, map_blocks, ego_policy,
                             accident_prob, keep_failed)
  return _record(settings, index)


def _record(settings: Dict[str, Any], index: int):
  seed = settings['seed']
  spec = scenario_spec(seed, index, settings['traffic_density'], settings['map_blocks'])
  meta = {'gold_corpus': {'seed': seed, 'index': int(index), 'map_seed': spec.map_seed,
                          'map_blocks': spec.map_blocks,
                          'traffic_density': spec.traffic_density,
                          'ego_policy': settings['ego_policy'], 'frames': settings['frames'],
                          'accident_prob': settings['accident_prob']}}
  scenario, failure = writer.record_procedural_episode(
      spec.map_seed, frames=settings['frames'], traffic_density=spec.traffic_density,
      map_blocks=spec.map_blocks, ego_policy=settings['ego_policy'],
      accident_prob=settings['accident_prob'], stop_on_failure=not settings['keep_failed'],
      scenario_id=scenario_id(seed, index), metadata=meta)
  name = scenario_file_name(seed, index)
  if scenario is None:
    return name, None, failure
  written_name, data, _ = writer.scenario_with_summary(scenario)
  assert written_name == name, (written_name, name)
  return name, data, failure


def _work(task) -> Dict[str, Any]:
  """Records and writes one scenario (or its drop marker); runs in a worker process."""
  settings, out_dir, index = task
  out_dir = pathlib.Path(out_dir)
  name, data, failure = _record(settings, index)
  if data is None:
    marker = {'index': index, 'file': name, **failure}
    write_json(out_dir / DROPPED_DIR / (name[:-len('.pkl')] + '.json'), marker)
    return {'index': index, 'name': name, 'failure': failure, 'metadata': None}
  writer.atomic_pickle(data, out_dir / name)
  from metadrive.scenario.utils import (  # pylint: disable=import-outside-toplevel
      dict_recursive_remove_array_and_set)
  return {'index': index, 'name': name, 'failure': failure,
          'metadata': dict_recursive_remove_array_and_set(data['metadata'])}


def _existing(out_dir: pathlib.Path, name: str) -> Optional[Dict[str, Any]]:
  """The summary entry of a complete scenario file already in `out_dir`, or a drop marker's
  {'failure'}; None when neither is there (a damaged file is removed, to be recorded again)."""
  path = out_dir / name
  if path.is_file():
    try:
      with open(path, 'rb') as f:
        data = pickle.load(f)
      metadata = data['metadata']
    except Exception:  # pylint: disable=broad-except
      path.unlink()
    else:
      from metadrive.scenario.utils import (  # pylint: disable=import-outside-toplevel
          dict_recursive_remove_array_and_set)
      return {'metadata': dict_recursive_remove_array_and_set(metadata),
              'failure': metadata.get(writer.FAILURE_METADATA_KEY)}
  marker = out_dir / DROPPED_DIR / (name[:-len('.pkl')] + '.json')
  if marker.is_file():
    try:
      failure = read_json(marker)
      return {'metadata': None, 'failure': {k: failure[k] for k in ('reason', 'key', 'step')}}
    except Exception:  # pylint: disable=broad-except
      marker.unlink()
  return None


def check_settings(out_dir, settings: Dict[str, Any]) -> None:
  """Writes `out_dir/corpus.json`; refuses (ConfigError, a ValueError) a directory that holds
  a corpus of other settings, or a ScenarioNet directory not made by `generate_corpus`."""
  out_dir = pathlib.Path(out_dir)
  path = out_dir / SETTINGS_FILE
  saved = read_json(path) if path.is_file() else None
  if saved is None and (out_dir / md.SUMMARY_FILE).exists():
    raise errors.ConfigError(
        f'{out_dir} holds {md.SUMMARY_FILE} but no {SETTINGS_FILE}: not a corpus made by '
        'generate_corpus', hint='use another output directory')
  if saved is not None:
    differ = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
    if differ:
      raise errors.ConfigError(
          f'{out_dir} holds a corpus generated with other settings ('
          + ', '.join(f'{k}: {saved.get(k)!r} there, {settings.get(k)!r} now' for k in differ)
          + ')', hint='use another output directory, or the saved settings to extend it')
  out_dir.mkdir(parents=True, exist_ok=True)
  write_json(path, settings)


# ---------------------------------------------------------------- the corpus


def generate_corpus(out_dir, num_scenarios: int, seed: int = 0, frames: int = 91,
                    workers: int = 1, traffic_density: Range = (0.05, 0.2),
                    map_blocks: Union[int, Sequence[int]] = (2, 5), ego_policy: str = 'idm',
                    keep_failed: bool = False, progress: bool = True,
                    accident_prob: float = 0.0) -> CorpusReport:
  """Generates (or completes) a corpus of scenarios 0 .. num_scenarios-1 in `out_dir`.

  `traffic_density` and `map_blocks` are (lo, hi) ranges (or one value) that each scenario's
  value is drawn from; see the module docstring for determinism, dropping and resuming.
  `workers` > 1 records in that many 'spawn' processes, one engine each; `workers` == 1 in this
  process (so no MetaDrive env may be open here). Returns the report.
  """
  start = time.perf_counter()
  out_dir = pathlib.Path(out_dir)
  num_scenarios, workers = int(num_scenarios), int(workers)
  if num_scenarios < 1:
    raise ValueError(f'num_scenarios must be >= 1, got {num_scenarios}')
  if workers < 1:
    raise ValueError(f'workers must be >= 1, got {workers}')
  settings = corpus_settings(seed, frames, traffic_density, map_blocks, ego_policy,
                             accident_prob, keep_failed)
  if ego_policy == 'expert':
    writer.ego_policy_class('expert')  # A clear error now, not in every worker.
  check_settings(out_dir, settings)
  names = [scenario_file_name(settings['seed'], i) for i in range(num_scenarios)]
  results: Dict[int, Dict[str, Any]] = {}
  for i, name in enumerate(names):
    found = _existing(out_dir, name)
    if found is not None:
      results[i] = found
  reused = len(results)
  todo = [i for i in range(num_scenarios) if i not in results]
  tasks = [(settings, str(out_dir), i) for i in todo]
  bar = None
  if progress:
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    bar = tqdm(total=num_scenarios, initial=reused, desc='scenarios', unit='scn',
               file=sys.stderr, dynamic_ncols=True)
  try:
    if workers == 1 or len(tasks) <= 1:
      outcomes = map(_work, tasks)
      _collect(outcomes, results, bar)
    else:
      context = multiprocessing.get_context('spawn')
      with context.Pool(min(workers, len(tasks))) as pool:
        _collect(pool.imap_unordered(_work, tasks), results, bar)
  finally:
    if bar is not None:
      bar.close()
  summary, mapping, dropped, failed_kept = {}, {}, [], 0
  for i, name in enumerate(names):
    result = results[i]
    failure = result['failure']
    if result['metadata'] is None:
      dropped.append((i, failure['reason'], failure['key'], int(failure['step'])))
      continue
    failed_kept += failure is not None
    summary[name] = result['metadata']
    mapping[name] = ''
  if summary:
    writer.atomic_pickle(mapping, out_dir / md.MAPPING_FILE)
    writer.atomic_pickle(summary, out_dir / md.SUMMARY_FILE)
  else:  # Every scenario dropped: no summary (a stale one of a larger corpus goes).
    for stale in (md.SUMMARY_FILE, md.MAPPING_FILE):
      (out_dir / stale).unlink(missing_ok=True)
  seconds = time.perf_counter() - start
  generated = len(tasks)
  return CorpusReport(
      out_dir=str(out_dir), num_scenarios=num_scenarios, written=len(summary),
      generated=generated, reused=reused,
      dropped_crash=sum(d[1] == 'crash' for d in dropped),
      dropped_out_of_road=sum(d[1] == 'out_of_road' for d in dropped), dropped=tuple(dropped),
      failed_kept=failed_kept, seconds=round(seconds, 3),
      scenarios_per_minute=round(60.0 * generated / seconds, 2) if seconds > 0 else 0.0,
      workers=workers)


def _collect(outcomes, results, bar) -> None:
  for outcome in outcomes:
    results[outcome['index']] = {'metadata': outcome['metadata'], 'failure': outcome['failure']}
    if bar is not None:
      bar.update(1)
      bar.set_postfix(dropped=sum(r['metadata'] is None for r in results.values()),
                      refresh=False)


# ---------------------------------------------------------------- the launcher's stage


def validate(config: Config) -> None:
  if not config.out_dir:
    raise errors.ConfigError('--out_dir is required')
  if config.num_scenarios < 1:
    raise errors.ConfigError(f'--num_scenarios must be >= 1, got {config.num_scenarios}')
  if config.workers < 1:
    raise errors.ConfigError(f'--workers must be >= 1, got {config.workers}')
  try:
    corpus_settings(config.seed, config.frames, config.traffic_density, config.map_blocks,
                    config.ego_policy, config.accident_prob, config.keep_failed)
  except ValueError as e:
    raise errors.ConfigError(str(e)) from e


def run(config: Config) -> CorpusReport:
  """Generates the corpus of `config`, prints the report, writes `out_dir/corpus_report.json`."""
  report = generate_corpus(
      config.out_dir, config.num_scenarios, seed=config.seed, frames=config.frames,
      workers=config.workers, traffic_density=config.traffic_density,
      map_blocks=config.map_blocks, ego_policy=config.ego_policy,
      keep_failed=config.keep_failed, progress=config.progress,
      accident_prob=config.accident_prob)
  write_json(os.path.join(config.out_dir, REPORT_FILE), report.to_dict())
  print('\n'.join(report.lines()), flush=True)
  return report
