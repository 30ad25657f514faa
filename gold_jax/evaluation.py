"""Evaluates a policy on its own: n episodes, each with its own seed, on a vector env.

Episode i resets with seed `seed + i` (`gold_jax.episodes.play`), so the result depends only on
the policy and `seed`, not on the number of copies. With `scenarios` (recorded-scenario tasks),
episode i replays scenario `scenarios[i]` instead, so each listed scenario is played once.
Success is reported where the task defines it.

`evaluate_set` scores a policy on a `gold_jax.protocol.EvalSet`, the episodes every method of a
table row is scored on.
"""

from typing import Dict, Optional, Sequence

import numpy as np

from gold_jax import episodes, protocol
from gold_jax.policies import Policy


def run_episodes(policy: Policy, env, num_episodes: int, seed: int = 0,
                 scenarios: Optional[Sequence[int]] = None) -> Dict[str, np.ndarray]:
  """Plays `num_episodes` episodes (`gold_jax.episodes.play`); returns per-episode arrays
  return/cost/length/success. With `scenarios` (scenario indices, at least `num_episodes`)
  episode i replays `scenarios[i]`."""
  return episodes.play(policy, env, num_episodes, seed, scenarios)


def evaluate(policy: Policy, env, num_episodes: int, seed: int = 0, prefix: str = 'evaluation/',
             scenarios: Optional[Sequence[int]] = None) -> Dict[str, float]:
  """Mean/std return and cost, mean length and (tasks with success) success rate."""
  played = run_episodes(policy, env, num_episodes, seed, scenarios)
  metrics = {
      'reward_mean': played['return'].mean(), 'reward_std': played['return'].std(),
      'cost_mean': played['cost'].mean(), 'cost_std': played['cost'].std(),
      'episode_length': played['length'].mean(),
  }
  if getattr(env.spec, 'has_success', False):
    metrics['success_rate'] = played['success'].mean()
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
