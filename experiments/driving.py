r"""Safe driving on real Waymo scenarios: GOLD against its guides and from-scratch learners.

  python -m experiments.driving --data_dir=$GOLD_WOMD_DIR --workdir=runs/driving --scale=small

The study itself is `gold_jax.studies.driving`.
"""

from gold_jax import launch
from gold_jax.studies.driving import Config, run, validate


define_flags = launch.flags_of(Config)


main = launch.make_main(launch.validated_config(Config, validate), run)


if __name__ == '__main__':
  launch.run(main, define_flags)
