r"""The GOLD demo (`make demo`): expert -> demonstrations -> DT guide -> GOLD vs IQL -> table.

  python -m experiments.demo --workdir=runs/demo            # about 15 minutes on 2 CPU cores
  python -m experiments.demo --workdir=/tmp/d --scale=smoke  # tiny, under a minute

The study itself is `gold_jax.studies.demo`.
"""

from absl import flags

from gold_jax import launch
from gold_jax.studies.demo import Config, run


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  """One flag per field of `Config` (its comments are the help), and --workdir."""
  launch.define_config_flags(Config, fv)
  flags.DEFINE_string('workdir', 'runs/demo', 'Output directory.', flag_values=fv)


main = launch.make_main(lambda values: launch.config_from_flags(Config, values), run)


if __name__ == '__main__':
  launch.run(main, define_flags)
