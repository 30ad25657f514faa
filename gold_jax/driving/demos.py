"""Demonstrations from human driving logs, in the simulator's own terms.

For each scenario of a ScenarioNet directory, `ScenarioEnv` is reset on it and a `LogTracker`
drives the ego along the human ego car's logged path; the episode records the observations the
agent sees, the actions taken, and the rewards, costs and done flags the env computes. The
tracking error (ego position vs the log, metres, over the steps driven) is reported, and
scenarios that are invalid, whose demonstration is too short (`ExtractConfig.min_length`) or
whose log cannot be followed are dropped with a logged reason. Scenarios may have any length
(WOMD's 91 frames, nuScenes' ~200, ...): each is driven to the end of its own log.
Scenario files are read one at a time.
"""

import dataclasses
import logging
import pathlib
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from gold_jax.driving import tracking
from gold_jax.envs import metadrive as md
from gold_jax.files import atomic_open

Episode = Dict[str, np.ndarray]
TASK = 'MetaDrive-Waymo'  # The registry task whose observations these are.
STEP_FIELDS = ('observations', 'next_observations', 'actions', 'rewards', 'costs', 'terminals',
               'timeouts', 'arrive_dest', 'crash', 'out_of_road')

_logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Report:
  """What happened to one scenario."""
  name: str                  # scenario file name
  scenario_id: str = ''
  kept: bool = False
  reason: str = ''           # why it was dropped ('' when kept)
  steps: int = 0             # env steps driven
  log_steps: int = 0         # valid logged steps available
  mean_error: float = float('nan')  # metres, ego vs log over steps 1..steps
  max_error: float = float('nan')
  reward: float = float('nan')
  cost: float = float('nan')
  success: bool = False      # arrive_dest at the end
  crash: bool = False
  out_of_road: bool = False


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
  max_mean_error: float = 1.0  # metres; above it the log is "not followed" and dropped
  max_max_error: float = 3.0   # metres
  min_steps: int = 20          # consecutive valid ego steps needed from step 0
  min_length: int = 10         # env steps driven; a shorter demonstration (e.g. the ego leaves
                               # the road at its first step) is dropped, never kept as a success
  tracker: tracking.TrackerConfig = tracking.TrackerConfig()

  def __post_init__(self):
    if self.min_length < 1:
      raise ValueError(f'min_length must be at least 1 step, got {self.min_length}')


def make_replay_env(data_dir, **options):
  """`ScenarioEnv` over every scenario in `data_dir`, without caching scenarios or maps."""
  options = dict(store_data=False, store_map=False, **options)
  return md.make_metadrive('waymo', data_dir=data_dir, **options)


def demonstrate(env, index: int, config: ExtractConfig = ExtractConfig()) -> Tuple[Episode, Report]:
  """Drives scenario `index` of `env` along its logged ego path; returns the episode and report.

  Raises `tracking.InvalidLog` when the ego log is unusable. The episode ends when the env
  terminates or truncates, or at the end of the log (marked as a timeout).
  """
  base = env.unwrapped
  obs, _ = env.reset(options={'scenario_index': index})
  scenario = base.engine.data_manager.current_scenario  # In the env's (centred) frame.
  log = tracking.ego_log(scenario, config.min_steps)
  ego = base.agent
  tracker = tracking.LogTracker(log, ego.FRONT_WHEELBASE + ego.REAR_WHEELBASE, ego.max_steering,
                                config.tracker)
  steps = {k: [] for k in STEP_FIELDS}
  ego_xy = [np.array(ego.position, dtype=np.float64)]
  for t in range(len(log.xy) - 1):
    action = tracker.act(t, ego_xy[-1], ego.heading_theta, ego.speed)
    next_obs, reward, terminated, truncated, info = env.step(action)
    ego_xy.append(np.array(ego.position, dtype=np.float64))
    end_of_log = t == len(log.xy) - 2
    for key, value in (('observations', obs), ('next_observations', next_obs),
                       ('actions', action), ('rewards', reward), ('costs', info['cost']),
                       ('terminals', terminated),
                       ('timeouts', (truncated or end_of_log) and not terminated),
                       ('arrive_dest', info['arrive_dest']), ('crash', info['crash']),
                       ('out_of_road', info['out_of_road'])):
      steps[key].append(value)
    obs = next_obs
    if terminated or truncated:
      break
  episode = _stack(steps)
  ego_xy = np.stack(ego_xy)
  error = np.linalg.norm(ego_xy - log.xy[:len(ego_xy)], axis=1)[1:]
  episode.update(ego_xy=ego_xy.astype(np.float32), log_xy=log.xy.astype(np.float32),
                 tracking_error=error.astype(np.float32))
  report = Report(
      name='', scenario_id=str(scenario['id']), kept=True, steps=len(error),
      log_steps=len(log.xy), mean_error=float(error.mean()), max_error=float(error.max()),
      reward=float(episode['rewards'].sum()), cost=float(episode['costs'].sum()),
      success=bool(episode['arrive_dest'][-1]), crash=bool(episode['crash'].any()),
      out_of_road=bool(episode['out_of_road'].any()))
  return episode, report


def _stack(steps: Dict[str, List[Any]]) -> Episode:
  dtypes = dict(observations=np.float32, next_observations=np.float32, actions=np.float32,
                rewards=np.float32, costs=np.float32)
  return {k: np.asarray(v, dtype=dtypes.get(k, bool)) for k, v in steps.items()}


def extract_scenario(env, index: int, path, config: ExtractConfig = ExtractConfig()
                     ) -> Tuple[Optional[Episode], Report]:
  """Checks scenario file `path` (env index `index`) and demonstrates it; never raises for bad data.

  Returns `(None, report)` with `report.reason` when the file is not a valid scenario, the ego
  log is unusable, the demonstration is shorter than `config.min_length` steps, or the tracking
  error exceeds the thresholds; a warning names file and reason.
  """
  path = pathlib.Path(path)
  report = Report(name=path.name)
  try:
    scenario = md.read_scenario(path)
    report.scenario_id = str(scenario['id'])
    tracking.ego_log(scenario, config.min_steps)  # Cheap check before the simulator runs.
    del scenario  # The simulator loads its own copy.
    episode, simulated = demonstrate(env, index, config)
    if simulated.scenario_id != report.scenario_id:
      raise RuntimeError(f'env scenario {index} is {simulated.scenario_id}, not this file')
    report = dataclasses.replace(simulated, name=path.name)
  except Exception as e:  # pylint: disable=broad-except  # Bad data must not stop a whole run.
    report.reason = str(e) if isinstance(e, ValueError) else f'{type(e).__name__}: {e}'
    _logger.warning('dropping scenario %s: %s', path, report.reason)
    return None, report
  if report.steps < config.min_length:
    report.kept = False
    report.reason = f'too short: {report.steps} steps < min_length {config.min_length}'
    _logger.warning('dropping scenario %s: %s', path, report.reason)
    return None, report
  if report.mean_error > config.max_mean_error or report.max_error > config.max_max_error:
    report.kept = False
    report.reason = (f'log not followed: tracking error mean {report.mean_error:.2f} m, '
                     f'max {report.max_error:.2f} m (limits {config.max_mean_error}, '
                     f'{config.max_max_error})')
    _logger.warning('dropping scenario %s: %s', path, report.reason)
    return None, report
  return episode, report


def extract_demos(data_dir, indices: Optional[Iterable[int]] = None,
                  config: ExtractConfig = ExtractConfig(), **env_options):
  """Yields `(index, episode or None, report)` for scenarios of `data_dir` (all by default)."""
  paths = md.scenario_files(data_dir)
  indices = range(len(paths)) if indices is None else indices
  env = make_replay_env(data_dir, **env_options)
  try:
    for index in indices:
      episode, report = extract_scenario(env, index, paths[index], config)
      yield index, episode, report
  finally:
    env.close()


# ---------------------------------------------------------------- saving


def atomic_savez(path, **arrays) -> None:
  """`np.savez` to `path`, atomically (`gold_jax.files.atomic_open`)."""
  with atomic_open(path, 'wb') as f:
    np.savez(f, **arrays)


def save_episode(path, episode: Episode) -> None:
  atomic_savez(path, **episode)


def load_episode(path) -> Episode:
  with np.load(path) as data:
    return {k: data[k] for k in data.files}


def save_dataset(path, episodes: List[Episode], task: str = TASK) -> None:
  """Writes the episodes, in order, as one DSRL-layout dataset (`.npz` or `.hdf5`)."""
  from gold_jax.data import trajectories  # pylint: disable=import-outside-toplevel
  trajectories.TrajectoryDataset.from_episodes(episodes, task=task).to_file(path)
