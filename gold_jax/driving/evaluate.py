"""Evaluation on held-out driving scenarios: one episode per scenario, every scenario once.

`make_scenario_env(data_dir)` builds the `MetaDrive-Waymo` env over a ScenarioNet directory
(for instance the test part written by `gold_jax.driving.split.write_split`);
`run_scenario(policy, env, index)` plays scenario `index` (chosen through the env's
`scenario_index` reset option) with a `gold_jax.policies.Policy` and returns the episode's
per-step arrays plus the ego's path; `evaluate_scenarios` plays every scenario of the env and
aggregates reward, cost, and success / crash / out-of-road rates with
`gold_jax.driving.metrics`.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from gold_jax import envs
from gold_jax import episodes as episodes_lib
from gold_jax.driving import metrics

TASK = 'MetaDrive-Waymo'
Episode = Dict[str, Any]


def make_scenario_env(data_dir, seed: int = 0, **options):
  """The `MetaDrive-Waymo` `SafeEnv` over the scenarios of `data_dir` (one simulator)."""
  return envs.make(TASK, seed=seed, data_dir=str(data_dir), **options)


def num_scenarios(env) -> int:
  """How many scenarios the env replays (its `scenario_index` range)."""
  return int(env.env.num)


def scenario_indices(env) -> List[int]:
  """Every `scenario_index` of the env, in order."""
  sampler = env.env
  return list(range(sampler.start, sampler.start + sampler.num))


def _ego(env):
  return env.env.unwrapped.agent


def run_scenario(policy, env, index: int, record_path: bool = True) -> Episode:
  """Plays one episode of scenario `index` (`gold_jax.episodes.play`); returns per-step arrays
  and the ego path.

  Keys: `rewards`, `costs` (float32, `(T,)`), `arrive_dest`, `crash`, `out_of_road`
  (bool, `(T,)`), `route_completion` (float, at the end), `scenario_id`, `index`, and with
  `record_path` the ego positions `ego_xy` `(T + 1, 2)` in the scenario's (ego-centred)
  frame, the frame `gold_jax.driving.plots.plot_scenario` draws in.
  """
  seen = {}

  def probe(single):
    if 'id' not in seen:  # Right after the reset: the scenario being replayed.
      seen['id'] = str(single.env.unwrapped.engine.data_manager.current_scenario['id'])
    return np.array(_ego(single).position, dtype=np.float64) if record_path else None

  played = episodes_lib.play(policy, env, 1, scenarios=[int(index)], record=True,
                             flags=metrics.FLAGS, info_keys=('route_completion',), probe=probe)
  step = played['episodes'][0]
  episode = {'rewards': step['rewards'], 'costs': step['costs'],
             **{flag: step[flag] for flag in metrics.FLAGS}}
  completion = step['route_completion']
  episode.update(index=int(index), scenario_id=seen['id'],
                 route_completion=float(completion[-1]) if completion.size else np.nan)
  if record_path:
    episode['ego_xy'] = np.stack(step['probe']).astype(np.float32)
  return episode


def evaluate_scenarios(policy, env, indices: Optional[Sequence[int]] = None,
                       record_path: bool = True) -> Tuple[Dict[str, float], List[Episode]]:
  """One episode per scenario (all of the env's by default); `(metrics, episodes)`.

  `metrics` are `gold_jax.driving.metrics.aggregate` of the episodes: `episodes`,
  `reward/mean`, `reward/std`, `cost/mean`, `cost/std`, `length/mean`, `success_rate`,
  `crash_rate`, `out_of_road_rate`.
  """
  indices = scenario_indices(env) if indices is None else list(indices)
  episodes = [run_scenario(policy, env, i, record_path) for i in indices]
  return metrics.aggregate(episodes), episodes


def episode_rows(episodes: Sequence[Episode]) -> List[Dict[str, Any]]:
  """Per-scenario outcomes (JSON-ready): id, index, and `metrics.episode_stats`."""
  rows = []
  for episode in episodes:
    row = {'scenario_id': episode['scenario_id'], 'index': episode['index'],
           'route_completion': episode['route_completion']}
    row.update(metrics.episode_stats(episode))
    rows.append(row)
  return rows
