r"""Table I and Fig. 2 of the paper at any scale: seven methods x tasks x seeds.

  python -m experiments.table1 --tasks=Car-Circle,Point-Goal --seeds=3 --scale=laptop \
      --workdir=runs/table1 --workers=2

The study itself is `gold_jax.studies.table1`.
"""

from gold_jax import launch
from gold_jax.studies.table1 import Config, run


define_flags = launch.flags_of(Config, workdir_default='runs/table1')


main = launch.make_main(lambda values: launch.config_from_flags(Config, values), run)


if __name__ == '__main__':
  launch.run(main, define_flags)
