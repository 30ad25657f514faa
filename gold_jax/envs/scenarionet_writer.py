"""Records MetaDrive's procedural maps (with traffic) as a ScenarioNet directory.

Each scenario is one episode of `SafeMetaDriveEnv` on map seed `seed + i`, with the ego driven by
MetaDrive's IDM policy, exported at 10 Hz with MetaDrive's own recorder. The result replays in
`ScenarioEnv` (`make_metadrive("waymo", data_dir=out_dir)`) like converted real-world data, and
its ego track serves as a "human log" whose ground truth is known to be drivable.

`record_procedural_episode` records one episode in a fresh simulator (IDM or MetaDrive's PPO
expert as the ego) and reports the first step at which the ego crashed or left the road
(`failure_of`); `gold_jax.driving.corpus` builds large, parallel, resumable corpora on it.
"""

import logging
import pathlib
import pickle
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from gold_jax.envs import metadrive as md
from gold_jax.envs import metadrive_assets
from gold_jax.files import atomic_open

DATASET_NAME = 'gold_procedural'
DATASET_VERSION = 'v0'

_logger = logging.getLogger(__name__)


def atomic_pickle(obj, path) -> None:
  """Pickles `obj` to `path`, atomically (`gold_jax.files.atomic_open`)."""
  with atomic_open(path, 'wb') as f:
    pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)


def write_procedural_scenarios(out_dir, num_scenarios: int, seed: int = 0, horizon: int = 150,
                               traffic_density: float = 0.1, accident_prob: float = 0.0,
                               map_blocks: int = 3, overwrite: bool = False) -> List[pathlib.Path]:
  """Writes `num_scenarios` recorded episodes (maps `seed .. seed + n - 1`) into `out_dir`.

  Episodes last at most `horizon + 1` steps of 0.1 s (fewer if the ego arrives). Scenario files
  are written first and `dataset_summary.pkl` / `dataset_mapping.pkl` last, every file
  atomically, so a directory with a summary is always complete. Returns the scenario paths.
  """
  # pylint: disable=import-outside-toplevel
  from metadrive.envs.safe_metadrive_env import SafeMetaDriveEnv
  from metadrive.policy.idm_policy import IDMPolicy
  from metadrive.scenario.utils import (
      dict_recursive_remove_array_and_set, extract_dataset_summary_and_mapping)
  # pylint: enable=import-outside-toplevel

  out_dir = pathlib.Path(out_dir)
  if (out_dir / md.SUMMARY_FILE).exists() and not overwrite:
    raise ValueError(f'{out_dir} already holds {md.SUMMARY_FILE}; '
                     'pass overwrite=True to replace it')
  out_dir.mkdir(parents=True, exist_ok=True)
  metadrive_assets.ensure_assets(_logger)
  env = SafeMetaDriveEnv(dict(
      use_render=False, log_level=logging.ERROR, agent_policy=IDMPolicy, start_seed=seed,
      num_scenarios=num_scenarios, traffic_density=traffic_density, accident_prob=accident_prob,
      map=map_blocks))
  summary, mapping, paths = {}, {}, []
  try:
    for index in range(seed, seed + num_scenarios):
      episodes = env.export_scenarios(lambda obs: [0.0, 0.0], scenario_index=index,
                                      max_episode_length=horizon, return_done_info=False)
      s, m, scenarios = extract_dataset_summary_and_mapping(
          [episodes[index]], DATASET_NAME, DATASET_VERSION)
      for name, scenario in scenarios.items():
        atomic_pickle(scenario, out_dir / name)
        paths.append(out_dir / name)
      summary.update(s)
      mapping.update(m)
  finally:
    env.close()
  atomic_pickle(mapping, out_dir / md.MAPPING_FILE)
  atomic_pickle(dict_recursive_remove_array_and_set(summary), out_dir / md.SUMMARY_FILE)
  return paths


# ---------------------------------------------------------------- one episode at a time
# `record_procedural_episode` is the building block of `gold_jax.driving.corpus`: one fresh
# `SafeMetaDriveEnv` per episode (so an episode depends on its arguments only, never on what
# the process recorded before), every step's `info` checked for a crash or leaving the road.

EGO_POLICIES = ('idm', 'expert')
# Step-info keys that make a recorded ego log undrivable, by the reason reported.
CRASH_KEYS = ('crash_vehicle', 'crash_object', 'crash_building', 'crash_human')
OUT_OF_ROAD_KEYS = ('out_of_road', 'crash_sidewalk')
FAILURE_REASONS = ('crash', 'out_of_road')
FAILURE_METADATA_KEY = 'gold_ego_failure'


def failure_of(info) -> Optional[Tuple[str, str]]:
  """(reason, info key) when a step's `info` says the ego crashed or left the road, else None.

  reason is 'crash' (a vehicle, object, building or pedestrian) or 'out_of_road' (off the
  drivable area, or onto the sidewalk); a crash wins when both happen in the same step.
  """
  for reason, keys in (('crash', CRASH_KEYS), ('out_of_road', OUT_OF_ROAD_KEYS)):
    for key in keys:
      if info.get(key, False):
        return reason, key
  return None


def episode_failure(infos: Sequence[Mapping]) -> Optional[Dict[str, Any]]:
  """The first failure in an episode's step infos: {'reason', 'key', 'step'} (step from 1)."""
  for step, info in enumerate(infos, start=1):
    failure = failure_of(info)
    if failure is not None:
      return {'reason': failure[0], 'key': failure[1], 'step': step}
  return None


def ego_policy_class(name: str):
  """MetaDrive's policy class for ego `name`: 'idm' (IDMPolicy) or 'expert' (its PPO expert).

  The expert is MetaDrive's shipped PPO network (`metadrive.policy.expert_policy.ExpertPolicy`,
  numpy weights in `metadrive/examples/ppo_expert/expert_weights.npz`), acting with its mean
  action so that a recording depends only on the map seed. Raises RuntimeError naming what is
  missing when it cannot be loaded.
  """
  # pylint: disable=import-outside-toplevel
  if name == 'idm':
    from metadrive.policy.idm_policy import IDMPolicy
    return IDMPolicy
  if name != 'expert':
    raise ValueError(f'unknown ego policy {name!r}; expected one of {EGO_POLICIES}')
  try:
    from metadrive.policy.expert_policy import ExpertPolicy
    from metadrive.examples.ppo_expert import numpy_expert
  except Exception as e:  # pylint: disable=broad-except
    raise RuntimeError(f'MetaDrive\'s PPO expert cannot be imported here ({type(e).__name__}: '
                       f'{e}); use ego_policy="idm"') from e
  weights = pathlib.Path(numpy_expert.ckpt_path)
  if not weights.is_file():
    raise RuntimeError(f'MetaDrive\'s PPO expert weights {weights} are missing (they ship with '
                       'metadrive-simulator); reinstall it or use ego_policy="idm"')

  class DeterministicExpertPolicy(ExpertPolicy):
    """ExpertPolicy acting with the network's mean action (MetaDrive's samples from the global
    numpy RNG, which would make recordings irreproducible)."""

    def act(self, agent_id=None):
      action = numpy_expert.expert(self.control_object, deterministic=True)
      self.action_info['action'] = action
      return action

  return DeterministicExpertPolicy
  # pylint: enable=import-outside-toplevel


def record_procedural_episode(map_seed: int, frames: int = 91, traffic_density: float = 0.1,
                              map_blocks: int = 3, ego_policy: str = 'idm',
                              accident_prob: float = 0.0, stop_on_failure: bool = True,
                              scenario_id: Optional[str] = None, metadata: Optional[dict] = None
                              ) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
  """Records one episode of procedural map `map_seed` with the ego driven by `ego_policy`.

  The episode has `frames` frames of 0.1 s (the reset and `frames - 1` steps), fewer if the ego
  arrives or the env ends it. Returns (scenario, failure): the ScenarioNet scenario dict (None
  when `stop_on_failure` and the ego failed, so no time is spent finishing and converting it)
  and the first failure (`episode_failure`) or None. The scenario's id is `scenario_id`
  (default MetaDrive's 'PGMap-<seed>'), its metadata holds `metadata` and, for a failed ego,
  `gold_ego_failure`. Opens and closes its own engine: no other MetaDrive env may be open in
  this process.
  """
  # pylint: disable=import-outside-toplevel
  from metadrive.envs.safe_metadrive_env import SafeMetaDriveEnv
  from metadrive.scenario.utils import convert_recorded_scenario_exported
  # pylint: enable=import-outside-toplevel
  if frames < 2:
    raise ValueError(f'frames must be at least 2, got {frames}')
  policy = ego_policy_class(ego_policy)
  metadrive_assets.ensure_assets(_logger)
  md.check_no_engine()
  env = SafeMetaDriveEnv(dict(
      use_render=False, log_level=logging.ERROR, agent_policy=policy, start_seed=int(map_seed),
      num_scenarios=1, traffic_density=float(traffic_density),
      accident_prob=float(accident_prob), map=int(map_blocks), horizon=None))
  failure = None
  try:
    env.config['record_episode'] = True
    env.reset(seed=int(map_seed))
    for step in range(1, frames):
      _, _, terminated, truncated, info = env.step([0.0, 0.0])
      if failure is None:
        found = failure_of(info)
        if found is not None:
          failure = {'reason': found[0], 'key': found[1], 'step': step}
          if stop_on_failure:
            return None, failure
      if terminated or truncated:
        break
    episode = env.engine.dump_episode()
  finally:
    env.config['record_episode'] = False
    env.close()
  scenario = convert_recorded_scenario_exported(episode, to_dict=False)
  if scenario_id is not None:
    scenario['id'] = scenario['metadata']['id'] = scenario_id
  scenario['metadata'].update(metadata or {})
  if failure is not None:
    scenario['metadata'][FAILURE_METADATA_KEY] = dict(failure)
  return scenario, failure


def scenario_with_summary(scenario, dataset_name: str = DATASET_NAME,
                          dataset_version: str = DATASET_VERSION
                          ) -> Tuple[str, Dict[str, Any], Dict[str, Any]]:
  """(file name, scenario dict, summary entry) of a recorded scenario, as ScenarioNet writes
  them: the file is `sd_<dataset>_<version>_<id>.pkl`, the summary entry its metadata."""
  # pylint: disable-next=import-outside-toplevel
  from metadrive.scenario.utils import (
      dict_recursive_remove_array_and_set, extract_dataset_summary_and_mapping)
  summary, _, scenarios = extract_dataset_summary_and_mapping(
      [scenario], dataset_name, dataset_version)
  (name, data), = scenarios.items()
  return name, data, dict_recursive_remove_array_and_set(summary[name])
