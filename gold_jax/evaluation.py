"""Evaluates a policy on its own: n episodes, each with its own seed, on a vector env.

Episodes run in rounds of `env.num_envs`: round r resets copy i with seed `seed + r * n + i`
and plays until every copy has finished its first episode, so the result depends only on the
policy and `seed`, not on the number of copies. With `scenarios` (recorded-scenario tasks),
episode i replays scenario `scenarios[i]` instead, so each listed scenario is played once.
Success is reported where the task defines it (an episode succeeds if `info["success"]` is
true at any of its steps).

`evaluate_set` scores a policy on a `gold_jax.protocol.EvalSet`, the episodes every method of a
table row is scored on.
"""

from typing import Dict, Optional, Sequence

import numpy as np

from gold_jax import protocol
from gold_jax.loop import episode_success
from gold_jax.policies import Policy


def _step_success(info, n: int) -> np.ndarray:
  """`info["success"]` of the copies that reported it this step (False elsewhere)."""
  if 'success' not in info:
    return np.zeros(n, bool)
  reported = np.asarray(info.get('_success', np.ones(n, bool)), bool)
  return reported & np.asarray(info['success'], bool)


def run_episodes(policy: Policy, env, num_episodes: int, seed: int = 0,
                 scenarios: Optional[Sequence[int]] = None) -> Dict[str, np.ndarray]:
  """Plays `num_episodes` episodes; returns per-episode arrays return/cost/length/success.

  With `scenarios` (scenario indices, at least `num_episodes` of them) episode i replays
  `scenarios[i]` (reset option `scenario_index`)."""
  if num_episodes <= 0:
    raise ValueError(f'num_episodes must be positive, got {num_episodes}')
  if scenarios is not None and len(scenarios) < num_episodes:
    raise ValueError(f'{num_episodes} episodes need as many scenarios, got {len(scenarios)}')
  n = env.num_envs
  rounds = []
  for start in range(0, num_episodes, n):
    options = None
    if scenarios is not None:  # Copies past the last scenario replay it again, unscored.
      picks = [scenarios[min(start + i, num_episodes - 1)] for i in range(n)]
      options = [{'scenario_index': int(k)} for k in picks]
    obs, _ = env.reset(seed=seed + start, options=options)
    policy.reset(n)
    ret, cost_sum = np.zeros(n), np.zeros(n)
    length, success = np.zeros(n, np.int64), np.zeros(n, bool)
    running = np.ones(n, bool)
    while running.any():
      action = policy.act(obs)
      obs, reward, cost, terminated, truncated, info = env.step(action)
      done = np.asarray(terminated, bool) | np.asarray(truncated, bool)
      policy.observe(action, reward, cost)
      step_success = np.where(done, episode_success(info, done), _step_success(info, n))
      ret += np.where(running, reward, 0.0)
      cost_sum += np.where(running, cost, 0.0)
      length += running
      success |= running & step_success
      running &= ~done
      if done.any():
        policy.restart(done)
    keep = slice(0, min(n, num_episodes - start))
    rounds.append((ret[keep], cost_sum[keep], length[keep], success[keep]))
  ret, cost, length, success = (np.concatenate(x) for x in zip(*rounds))
  return {'return': ret, 'cost': cost, 'length': length, 'success': success}


def evaluate(policy: Policy, env, num_episodes: int, seed: int = 0, prefix: str = 'evaluation/',
             scenarios: Optional[Sequence[int]] = None) -> Dict[str, float]:
  """Mean/std return and cost, mean length and (tasks with success) success rate."""
  episodes = run_episodes(policy, env, num_episodes, seed, scenarios)
  metrics = {
      'reward_mean': episodes['return'].mean(), 'reward_std': episodes['return'].std(),
      'cost_mean': episodes['cost'].mean(), 'cost_std': episodes['cost'].std(),
      'episode_length': episodes['length'].mean(),
  }
  if getattr(env.spec, 'has_success', False):
    metrics['success_rate'] = episodes['success'].mean()
  return {prefix + name: float(value) for name, value in metrics.items()}


def evaluate_set(policy: Policy, env, eval_set: protocol.EvalSet, num_episodes: Optional[int] = None,
                 prefix: str = 'evaluation/') -> Dict[str, float]:
  """`evaluate` on the first `num_episodes` (default: all) episodes of `eval_set`.

  Recorded-scenario sets play each listed scenario index once; seed sets reset episode i with
  `eval_set.reset_seeds[i]` (consecutive seeds, as `protocol.eval_set` makes them).
  """
  total = eval_set.episodes
  count = total if num_episodes is None else min(int(num_episodes), total)
  if eval_set.scenarios:
    return evaluate(policy, env, count, 0, prefix, eval_set.scenario_indices)
  seeds = eval_set.reset_seeds
  if list(seeds) != list(range(seeds[0], seeds[0] + len(seeds))):
    raise ValueError('evaluate_set needs consecutive reset seeds (protocol.eval_set)')
  return evaluate(policy, env, count, seeds[0], prefix)
