r"""Resident memory of one process replaying many MetaDrive-Waymo episodes.

  python -m experiments.bench_driving_memory --data_dir=$GOLD_WOMD_DIR --episodes=200

Plays `--episodes` episodes in one process, cycling through the scenarios of `--data_dir`
(episode i replays scenario i mod n), with uniform random actions or, with `--ckpt`, a saved
policy (any checkpoint `gold_jax.policies.load_policy` loads). Prints the RSS before the first
episode, after the first and the last, its maximum, and the growth per 100 episodes (slope
over the second half of the run); `--json_out` also writes them with the per-episode samples.
`--store_cache=true|false` runs MetaDrive with or without its per-scenario caches (`store_map`,
`store_data`; without them memory is bounded by one scenario instead of by the number of
scenarios); unset, `gold_jax.envs.metadrive` chooses (caches on up to `CACHE_SCENARIOS`);
`--force_destroy=false` lets MetaDrive recycle objects between episodes (its own default),
which leaks the physics body of every recycled traffic light (see `gold_jax.envs.metadrive`).
"""

from typing import Any, Callable, Dict, Optional

from absl import app
from absl import flags

from gold_jax import files
from gold_jax import launch
from gold_jax.driving import evaluate as driving_eval
from gold_jax.driving import memory
from gold_jax.envs import metadrive as md
from gold_jax.policies import RandomPolicy, load_policy


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  kw = {'flag_values': fv}
  flags.DEFINE_string('data_dir', None, f'ScenarioNet directory (default: ${md.DATA_DIR_ENV}).',
                      **kw)
  flags.DEFINE_integer('episodes', 200, 'Episodes to play.', **kw)
  flags.DEFINE_string('ckpt', '', 'Policy checkpoint; empty: uniform random actions.', **kw)
  flags.DEFINE_bool('store_cache', None, 'Keep MetaDrive\'s per-scenario map and data caches; '
                    'unset: on up to gold_jax.envs.metadrive.CACHE_SCENARIOS scenarios.', **kw)
  flags.DEFINE_bool('force_destroy', True, 'Destroy MetaDrive objects at the end of each '
                    'episode instead of recycling them.', **kw)
  flags.DEFINE_integer('print_every', 20, 'Print the RSS every this many episodes.', **kw)
  flags.DEFINE_integer('seed', 0, 'Seed of the random policy.', **kw)
  flags.DEFINE_string('json_out', '', 'Also write the figures here.', **kw)


def run(data_dir, episodes: int = 200, ckpt: str = '', store_cache: Optional[bool] = None,
        force_destroy: bool = True, seed: int = 0, print_every: int = 20, json_out: str = '',
        log: Callable[[str], None] = print) -> Dict[str, Any]:
  """Measures, prints and returns the figures of `memory.MemoryReport` plus the setup."""
  data_dir = md.resolve_data_dir(data_dir)
  options = dict(force_destroy=force_destroy)
  if store_cache is not None:
    options.update(store_map=store_cache, store_data=store_cache)
  env = driving_eval.make_scenario_env(data_dir, seed=seed, **options)
  try:
    if ckpt:
      policy, _ = load_policy(ckpt)
      name = ckpt
    else:
      policy, name = RandomPolicy(env.act_dim, seed), 'random'
    indices = driving_eval.scenario_indices(env)
    log(f'{episodes} episodes over {len(indices)} scenarios of {data_dir}, policy {name}, '
        f'store_cache={store_cache}, force_destroy={force_destroy}; RSS in MiB')

    def on_episode(i, rss):
      if print_every and ((i + 1) % print_every == 0 or i == 0):
        log(f'  episode {i + 1:4d}: RSS {rss:8.1f}')

    report = memory.measure_episodes(env, policy, episodes, indices, on_episode)
  finally:
    env.close()
  figures = report.figures()
  log(f'RSS before {figures["rss_before"]:.1f}, start {figures["rss_start"]:.1f}, '
      f'end {figures["rss_end"]:.1f}, max {figures["rss_max"]:.1f} MiB; growth '
      f'{figures["growth_per_100"]:+.2f} MiB per 100 episodes ({report.steps} steps, '
      f'{report.seconds:.0f} s)')
  result = {'setup': dict(data_dir=str(data_dir), episodes=episodes, policy=name,
                          store_cache=store_cache, force_destroy=force_destroy,
                          scenarios=len(indices), seed=seed),
            **figures, 'samples': report.samples}
  if json_out:
    files.write_json(json_out, result, indent=1)
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  run(f.data_dir, f.episodes, f.ckpt, f.store_cache, f.force_destroy, f.seed, f.print_every,
      f.json_out)


if __name__ == '__main__':
  launch.run(main, define_flags)
