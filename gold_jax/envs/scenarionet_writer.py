"""Records MetaDrive's procedural maps (with traffic) as a ScenarioNet directory.

Each scenario is one episode of `SafeMetaDriveEnv` on map seed `seed + i`, with the ego driven by
MetaDrive's IDM policy, exported at 10 Hz with MetaDrive's own recorder. The result replays in
`ScenarioEnv` (`make_metadrive("waymo", data_dir=out_dir)`) like converted real-world data, and
its ego track serves as a "human log" whose ground truth is known to be drivable.
"""

import logging
import pathlib
import pickle
from typing import List

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
