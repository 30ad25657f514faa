r"""The GOLD demo (`make demo`): expert -> demonstrations -> DT guide -> GOLD vs IQL -> table.

  python -m experiments.demo --workdir=runs/demo            # about 15 minutes on 2 CPU cores
  python -m experiments.demo --workdir=/tmp/d --scale=smoke  # tiny, under a minute

The study itself is `gold_jax.studies.demo`.
"""

from gold_jax import launch
from gold_jax.studies.demo import Config, run


define_flags = launch.flags_of(Config, workdir_default='runs/demo')


main = launch.make_main(lambda values: launch.config_from_flags(Config, values), run)


if __name__ == '__main__':
  launch.run(main, define_flags)
