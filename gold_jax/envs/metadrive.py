"""MetaDrive environments: procedural safe driving and replay of recorded (Waymo) scenarios.

`make_metadrive("safe")` builds `SafeMetaDriveEnv` (procedural maps with traffic and accidents);
`make_metadrive("waymo")` builds `ScenarioEnv` over a ScenarioNet directory (the directory from
`data_dir=` or the `GOLD_WOMD_DIR` environment variable). Both run headless with rendering off
and MetaDrive's logging quiet. Actions are `[steering, throttle_brake]` in `[-1, 1]^2`; `info`
carries `cost`, `arrive_dest`, `crash`, `out_of_road` and `route_completion`.

MetaDrive allows one simulator per process: close an env before making the next (a second one
raises `gold_jax.errors.EnvError` saying so), and use processes for parallel envs
(`make_vec(task, n, asynchronous=True)`).
"""

import logging
import os
import pathlib
import pickle
import re
from typing import Any, Dict, List, Optional

import gymnasium
import numpy as np

from gold_jax.envs import metadrive_assets
from gold_jax.errors import EnvError

KINDS = ('safe', 'waymo')
DATA_DIR_ENV = 'GOLD_WOMD_DIR'
SUMMARY_FILE = 'dataset_summary.pkl'
MAPPING_FILE = 'dataset_mapping.pkl'
SCENARIO_KEYS = ('id', 'version', 'length', 'tracks', 'dynamic_map_states', 'map_features',
                 'metadata')
EXPECTED = (f'a ScenarioNet directory: {SUMMARY_FILE} (a dict of scenario file names) plus '
            f'scenario pickles named sd_*.pkl, each a dict with keys {", ".join(SCENARIO_KEYS)}')
# Episode limits: procedural maps stop after 1000 steps; a replayed scenario 10 steps (1 s) after
# its log ends, since the recorded traffic disappears there.
# Replay destroys its objects at the end of each episode (`force_destroy`) instead of recycling
# them: MetaDrive 0.4.3 re-initialises a recycled traffic light with a new physics body and never
# frees the old one, so a long-running process grows by about 4 MiB per 100 Waymo episodes.
# Destroying keeps memory flat at about 25% more time per episode; pass force_destroy=False to
# trade memory for speed.
DEFAULTS = {'safe': dict(horizon=1000),
            'waymo': dict(horizon=None, allowed_more_steps=10, force_destroy=True)}
# MetaDrive keeps every replayed scenario's data and map in memory for the life of the process
# (`store_data`, `store_map`): about 8 MiB per procedural-map scenario, so a process that visits
# the 318 scenarios of a train corpus grows to about 3 GiB, one over 10k scenarios to 80 GiB.
# Over more than CACHE_SCENARIOS scenarios, replay reads each scenario from disk at its reset
# instead, which bounds memory by one scenario (pass store_data/store_map to choose).
CACHE_SCENARIOS = 100

_logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- ScenarioNet directories


def scenario_files(data_dir) -> List[pathlib.Path]:
  """Paths of the scenarios listed in `dataset_summary.pkl`, in MetaDrive's index order.

  Raises `ValueError` naming the path and the expected layout when the directory is missing,
  empty, has no readable summary, or lists files that do not exist.
  """
  root = pathlib.Path(data_dir)
  if not root.is_dir():
    raise ValueError(f'scenario directory {root} does not exist; expected {EXPECTED}')
  summary_path = root / SUMMARY_FILE
  if not summary_path.is_file():
    raise ValueError(f'no {SUMMARY_FILE} in {root}; expected {EXPECTED}')
  summary = _load_pickle(summary_path)
  if not isinstance(summary, dict) or not summary:
    raise ValueError(f'{summary_path} is not a non-empty dict of scenario files; '
                     f'expected {EXPECTED}')
  mapping = _load_pickle(root / MAPPING_FILE) if (root / MAPPING_FILE).is_file() else {}
  if not isinstance(mapping, dict):
    raise ValueError(f'{root / MAPPING_FILE} is not a dict; expected {EXPECTED}')
  paths = []
  for name in summary:
    if not isinstance(name, str) or not re.fullmatch(r'(sd_.*|\d+)\.pkl', name):
      raise ValueError(f'{summary_path} lists {name!r}, not a scenario file name; '
                       f'expected {EXPECTED}')
    path = root / mapping.get(name, '') / name
    if not path.is_file():
      raise ValueError(f'{summary_path} lists {name} but {path} does not exist; '
                       f'expected {EXPECTED}')
    paths.append(path)
  return paths


def read_scenario(path) -> Dict[str, Any]:
  """Loads one scenario pickle; `ValueError` naming the file if it is not a ScenarioNet scenario."""
  path = pathlib.Path(path)
  data = _load_pickle(path)
  if not isinstance(data, dict):
    raise ValueError(f'{path} holds a {type(data).__name__}, not a scenario dict; '
                     f'expected {EXPECTED}')
  missing = [k for k in SCENARIO_KEYS if k not in data]
  if missing:
    raise ValueError(f'{path} lacks keys {missing}; expected {EXPECTED}')
  version = data['version']
  if not isinstance(version, str) or not re.search(r'\d+\.\d+', version):
    raise ValueError(f'{path} has unknown format version {version!r}; expected a version string '
                     'such as "MetaDrive v0.4.3"')
  return data


def check_scenario_dir(data_dir, start: int = 0, num: Optional[int] = None) -> List[pathlib.Path]:
  """Validates a ScenarioNet directory for ScenarioEnv and returns the selected scenario paths.

  The summary and file existence are checked for all scenarios; the content of the first
  selected scenario is loaded and checked (the rest are read lazily by the simulator).
  """
  paths = scenario_files(data_dir)
  num = len(paths) - start if num is None else num
  if start < 0 or num <= 0 or start + num > len(paths):
    raise ValueError(f'{data_dir} holds {len(paths)} scenarios; cannot select {num} from index '
                     f'{start}')
  selected = paths[start:start + num]
  read_scenario(selected[0])
  return selected


def scenario_lengths(data_dir, start: int = 0, num: Optional[int] = None) -> List[int]:
  """Frames of each selected scenario (91 for WOMD, about 200 for nuScenes at 10 Hz, ...).

  Read from the summary's `track_length` metadata where ScenarioNet wrote it, else from the
  scenario file's `length`.
  """
  root = pathlib.Path(data_dir)
  paths = scenario_files(root)
  num = len(paths) - start if num is None else num
  if start < 0 or num <= 0 or start + num > len(paths):
    raise ValueError(f'{data_dir} holds {len(paths)} scenarios; cannot select {num} from index '
                     f'{start}')
  paths = paths[start:start + num]
  summary = _load_pickle(root / SUMMARY_FILE)
  lengths = []
  for path in paths:
    length = (summary.get(path.name) or {}).get('track_length')
    if not isinstance(length, (int, np.integer)) or length < 1:
      length = read_scenario(path)['length']
    lengths.append(int(length))
  return lengths


def episode_steps(data_dir, start: int = 0, num: Optional[int] = None) -> int:
  """Episode length (steps) of a replay env over the selected scenarios: the longest one's
  frames minus one (90 for WOMD's 91 frames). Each episode still ends when its own log ends
  plus `allowed_more_steps`; this is the cap on all of them (the TaskSpec's
  `max_episode_steps`, the DT's timestep table, the jump-start curriculum's T)."""
  return max(1, max(scenario_lengths(data_dir, start, num)) - 1)


def _load_pickle(path: pathlib.Path):
  try:
    with open(path, 'rb') as f:
      return pickle.load(f)
  except Exception as e:  # Any unpickling failure means "not the expected format".
    raise ValueError(f'cannot read {path} as a pickle ({type(e).__name__}: {e}); '
                     f'expected {EXPECTED}') from e


# ---------------------------------------------------------------- environments


def resolve_data_dir(data_dir=None) -> pathlib.Path:
  """`data_dir`, else `$GOLD_WOMD_DIR`; `ValueError` if neither is given."""
  data_dir = data_dir or os.environ.get(DATA_DIR_ENV)
  if not data_dir:
    raise ValueError(f'no scenario directory: pass data_dir= or set {DATA_DIR_ENV}; '
                     f'expected {EXPECTED}')
  return pathlib.Path(data_dir).expanduser()


class ScenarioSampler(gymnasium.Wrapper):
  """Makes scenario choice reproducible: `reset(seed=s)` reseeds the sampler, as in Gymnasium.

  MetaDrive reads `reset(seed=i)` as "scenario/map i"; this wrapper draws `i` uniformly from
  `[start, start + num)` with its own generator seeded by `seed`. Pass
  `options={"scenario_index": i}` to pick a scenario explicitly.
  """

  def __init__(self, env: gymnasium.Env, start: int, num: int, seed: int = 0,
               max_episode_steps: Optional[int] = None):
    super().__init__(env)
    self.start, self.num = start, num
    # Steps of the longest episode (replay: the longest scenario, `episode_steps`, or the
    # `horizon` given); None where unknown.
    self.max_episode_steps = max_episode_steps
    self._rng = np.random.default_rng(seed)

  def reset(self, *, seed=None, options=None):
    if seed is not None:
      self._rng = np.random.default_rng(seed)
    index = (options or {}).get('scenario_index')
    if index is None:
      index = self.start + int(self._rng.integers(self.num))
    return self.env.reset(seed=int(index))


def check_no_engine() -> None:
  """Raises `EnvError` naming the fix when this process already runs a MetaDrive simulator
  (MetaDrive itself would stop a second env with an assertion about its engine)."""
  from metadrive.engine import engine_utils  # pylint: disable=import-outside-toplevel
  if engine_utils.engine_initialized():
    raise EnvError(
        'a MetaDrive env is already open in this process, and MetaDrive runs one simulator '
        'per process',
        hint='close() the first env before making the next, or run copies in their own '
             'processes: gold_jax.envs.make_vec(task, n, asynchronous=True)')


def make_metadrive(kind: str, seed: int = 0, **options) -> gymnasium.Env:
  """Builds a headless MetaDrive env of `kind` ("safe" or "waymo").

  Options (all optional): `num_scenarios`, `start_scenario_index` (the scenario/map range, for
  train/test splits), `horizon` (steps; default 1000 for "safe"; "waymo" episodes end 10 steps
  after the log unless `horizon` or `allowed_more_steps` says otherwise), `data_dir` ("waymo"
  only; else `$GOLD_WOMD_DIR`); any other key goes to the MetaDrive config unchanged. Replay
  over more than `CACHE_SCENARIOS` scenarios does not cache them (`store_data`, `store_map`
  False) unless the options say so.
  The returned env's `max_episode_steps` is the longest episode: `horizon`, else for "waymo"
  the longest selected scenario (`episode_steps`; scenarios need not have WOMD's 91 frames).
  """
  if kind not in KINDS:
    raise ValueError(f'unknown MetaDrive kind {kind!r}; expected one of {KINDS}')
  options = dict(options)
  config = dict(use_render=False, image_observation=False, log_level=logging.ERROR,
                **DEFAULTS[kind])
  start = int(options.pop('start_scenario_index', 0))
  num = options.pop('num_scenarios', None)
  if kind == 'waymo':
    data_dir = resolve_data_dir(options.pop('data_dir', None))
    num = len(check_scenario_dir(data_dir, start, num))
    config.update(data_directory=str(data_dir), start_scenario_index=start, num_scenarios=num)
    if num > CACHE_SCENARIOS:
      config.update(store_data=False, store_map=False)
  else:
    num = 100 if num is None else int(num)
    config.update(start_seed=start, num_scenarios=num)
  config.update(options)
  steps = config['horizon']
  if steps is None and kind == 'waymo':  # Scenarios of any length replay to their own end.
    steps = episode_steps(data_dir, start, num)

  metadrive_assets.ensure_assets(_logger)
  check_no_engine()
  if kind == 'waymo':
    from metadrive.envs.scenario_env import ScenarioEnv  # pylint: disable=import-outside-toplevel
    env = ScenarioEnv(config)
  else:
    from metadrive.envs import safe_metadrive_env  # pylint: disable=import-outside-toplevel
    env = safe_metadrive_env.SafeMetaDriveEnv(config)
  space = env.action_space
  if space.shape != (2,) or np.any(space.low != -1.0) or np.any(space.high != 1.0):
    env.close()
    raise RuntimeError(f'MetaDrive action space {space} is not [-1, 1]^2')
  return ScenarioSampler(env, start, num, seed, steps)
