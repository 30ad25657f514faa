r"""Safe driving on real Waymo scenarios: GOLD against its guides and from-scratch learners.

  python -m experiments.driving --data_dir=$GOLD_WOMD_DIR --workdir=runs/driving --scale=small

The study itself is `gold_jax.studies.driving`.
"""

from absl import flags

from gold_jax import launch
from gold_jax.studies.driving import Config, run, validate


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  """One flag per field of `Config` (its comments are the help), and --workdir."""
  launch.define_config_flags(Config, fv)
  flags.DEFINE_string('workdir', None, 'Run directory.', flag_values=fv)


main = launch.make_main(launch.validated_config(Config, validate), run)


if __name__ == '__main__':
  launch.run(main, define_flags)
