"""The episode runner: every episode played outside training goes through `play`.

Evaluation (`gold_jax.evaluation`), demonstration rollouts (`gold_jax.stages.collect`), trajectory
plots and videos (`gold_jax.stages.evaluate`) and the driving evaluation
(`gold_jax.driving.evaluate`) differ only in what they keep of an episode, so they share this
loop. The training loop (`gold_jax.loop`) is the one other place that steps environments.

Episodes run in rounds of `env.num_envs`: round r resets copy i with seed `seed + r * n + i`
(or, with `scenarios`, replays scenario `scenarios[r * n + i]`), and plays until each of its
copies has finished one episode, so what an episode holds depends only on the policy and its
seed, not on the number of copies. An episode succeeds if `info["success"]` is true at any of
its steps.

`play` returns per-episode arrays (`return`, `cost`, `length`, `success`) and, when asked, the
episodes themselves (`record`: DSRL keys; `flags`: per-step booleans of `info`; `probe`:
whatever a function reads from the simulator after the reset and after every step, e.g. the
agent's position; probes need a single env).
"""

from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import tqdm

STEP_KEYS = ('observations', 'next_observations', 'actions', 'rewards', 'costs')
Perturb = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (actions (n, A), episode ids) -> actions


class ActionFunction:
  """A `Policy` from a function `act(obs (n, obs_dim)) -> (n, act_dim)` without memory."""

  def __init__(self, act: Callable[[np.ndarray], np.ndarray]):
    self._act = act

  def reset(self, n: int) -> None:
    del n

  def act(self, obs: np.ndarray) -> np.ndarray:
    return self._act(obs)

  def observe(self, action, reward, cost) -> None:
    del action, reward, cost

  def restart(self, done) -> None:
    del done


class _Single:
  """A single `SafeEnv` seen as a vector env of one copy, without autoreset.

  The runner stops a round when its episodes end, so a single env never needs to autoreset; and
  after the last step its simulator still shows the end of the episode (what probes read).
  """

  num_envs = 1

  def __init__(self, env):
    self.env = env
    self.spec = env.spec

  def reset(self, seed: Optional[int] = None, options=None):
    option = None if options is None else options[0]
    obs, info = self.env.reset(seed=seed, options=option)
    return obs[None], info

  def step(self, actions):
    obs, reward, cost, terminated, truncated, info = self.env.step(np.asarray(actions)[0])
    final = {}
    if terminated or truncated:
      final = {'final_observation': np.empty(1, object), 'final_info': np.empty(1, object)}
      final['final_observation'][0], final['final_info'][0] = obs, info
    merged = {k: np.array([v]) for k, v in info.items() if np.isscalar(v)}
    return (obs[None], np.array([reward]), np.array([cost]), np.array([terminated]),
            np.array([truncated]), {**merged, **final})


def _is_vector(env) -> bool:
  return hasattr(env, 'num_envs')


def step_info(info: Dict[str, Any], key: str, done: np.ndarray, default=0.0) -> np.ndarray:
  """Per copy: `info[key]` of this step (float64), read from `final_info` where an episode
  ended (a vector env's info then already belongs to the next episode); `default` if absent."""
  n = done.shape[0]
  value = np.full(n, default, np.float64)
  if key in info:
    reported = np.asarray(info.get('_' + key, np.ones(n, bool)), bool)
    value = np.where(reported, np.asarray(info[key], np.float64), value)
  final_info = info.get('final_info')
  if final_info is not None:
    for i in np.flatnonzero(done):
      if final_info[i] is not None:
        value[i] = float(final_info[i].get(key, default))
  return value


def step_flag(info: Dict[str, Any], key: str, done: np.ndarray) -> np.ndarray:
  """`step_info` as a bool: False where absent."""
  return step_info(info, key, done, 0.0) != 0.0


def play(policy, env, num_episodes: int, seed: int = 0,
         scenarios: Optional[Sequence[int]] = None, record: bool = False,
         flags: Sequence[str] = (), info_keys: Sequence[str] = (),
         probe: Optional[Callable[[Any], Any]] = None,
         perturb: Optional[Perturb] = None, max_steps: Optional[int] = None,
         progress: bool = False, desc: str = 'episodes') -> Dict[str, Any]:
  """Plays `num_episodes` episodes of `policy` on `env` (a vector env, or one `SafeEnv`).

  Args:
    policy: a `gold_jax.policies.Policy` (`ActionFunction` wraps a plain function).
    env: a `SafeVecEnv`, or a single `SafeEnv` (needed for `probe`).
    num_episodes: episodes to play.
    seed: reset seed of episode 0; episode i resets with `seed + i`.
    scenarios: scenario indices (reset option `scenario_index`), one per episode.
    record: keep each episode's transitions (DSRL keys, plus `terminals` and `timeouts`).
    flags: `info` keys kept per step as booleans (e.g. `crash`, `out_of_road`).
    info_keys: `info` keys kept per step as floats (NaN where absent).
    probe: `probe(simulator_env) -> value`, called after the reset and after every step.
    perturb: `perturb(actions, episode_ids) -> actions`, e.g. exploration noise.
    max_steps: cut each episode after this many steps (a cut episode is neither terminal nor
      timed out).
    progress: show a tqdm bar over episodes.

  Returns:
    `return`, `cost` (float64), `length` (int64), `success` (bool): arrays `(num_episodes,)`;
    with `record`, `flags` or `probe` also `episodes`: one dict per episode.
  """
  if num_episodes <= 0:
    raise ValueError(f'num_episodes must be positive, got {num_episodes}')
  if scenarios is not None and len(scenarios) < num_episodes:
    raise ValueError(f'{num_episodes} episodes need as many scenarios, got {len(scenarios)}')
  single = None
  if not _is_vector(env):
    single, env = env, _Single(env)
  if probe is not None and single is None:
    raise ValueError('a probe reads one simulator: pass a single env, not a vector env')
  keep = record or bool(flags) or bool(info_keys) or probe is not None
  n = env.num_envs
  totals = {k: np.zeros(num_episodes, d) for k, d in
            (('return', np.float64), ('cost', np.float64), ('length', np.int64),
             ('success', bool))}
  episodes: List[Dict[str, Any]] = []
  bar = tqdm.tqdm(total=num_episodes, desc=desc, unit='episode', disable=not progress,
                  dynamic_ncols=True)
  for start in range(0, num_episodes, n):
    count = min(n, num_episodes - start)
    options = None
    if scenarios is not None:  # Copies past the last episode replay it again, unkept.
      options = [{'scenario_index': int(scenarios[min(start + i, num_episodes - 1)])}
                 for i in range(n)]
    obs, _ = (env.reset(seed=seed + start) if options is None else
              env.reset(seed=seed + start, options=options))
    policy.reset(n)
    ids = np.arange(start, start + n)
    rows = [{k: [] for k in STEP_KEYS + tuple(flags) + tuple(info_keys)} for _ in range(count)]
    ends = np.zeros((count, 2), bool)  # (terminal, timeout) of each kept episode.
    if probe is not None:
      rows[0]['probe'] = [probe(single)]
    running = np.arange(n) < count
    steps = 0
    while running.any() and (max_steps is None or steps < max_steps):
      action = np.asarray(policy.act(obs), np.float32)
      if perturb is not None:
        action = np.asarray(perturb(action, ids), np.float32)
      next_obs, reward, cost, terminated, truncated, info = env.step(action)
      policy.observe(action, reward, cost)
      terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
      done = terminated | truncated
      success = step_flag(info, 'success', done)
      steps += 1
      for i in np.flatnonzero(running):
        k = start + i
        totals['return'][k] += reward[i]
        totals['cost'][k] += cost[i]
        totals['length'][k] += 1
        totals['success'][k] |= success[i]
        if keep:
          row = rows[i]
          if record:
            final = next_obs[i]
            if done[i] and info.get('final_observation') is not None:
              final = info['final_observation'][i]
            for key, value in zip(STEP_KEYS, (obs[i], final, action[i], reward[i], cost[i])):
              row[key].append(value)
          for key in flags:
            row[key].append(bool(step_flag(info, key, done)[i]))
          for key in info_keys:
            row[key].append(float(step_info(info, key, done, np.nan)[i]))
          if probe is not None:
            row['probe'].append(probe(single))
        if done[i]:
          ends[i] = terminated[i], not terminated[i]
          bar.update(1)
      running &= ~done
      if done.any():
        policy.restart(done)
      obs = next_obs
    for i in range(count):
      if keep:
        episodes.append(_episode(rows[i], ends[i], record, flags, info_keys))
  bar.close()
  out: Dict[str, Any] = dict(totals)
  if keep:
    out['episodes'] = episodes
  return out


def _episode(row: Dict[str, list], end: np.ndarray, record: bool, flags: Sequence[str],
             info_keys: Sequence[str]) -> Dict[str, Any]:
  episode: Dict[str, Any] = {}
  length = len(row['rewards'])
  if record:
    episode = {k: np.asarray(row[k], np.float32).reshape(length, -1) if k in (
        'observations', 'next_observations', 'actions') else np.asarray(row[k], np.float32)
               for k in STEP_KEYS}
    episode['terminals'] = np.zeros(length, bool)
    episode['timeouts'] = np.zeros(length, bool)
    if length:
      episode['terminals'][-1], episode['timeouts'][-1] = end
  for key in flags:
    episode[key] = np.asarray(row[key], bool)
  for key in info_keys:
    episode[key] = np.asarray(row[key], np.float64)
  if 'probe' in row:
    episode['probe'] = row['probe']
  return episode
