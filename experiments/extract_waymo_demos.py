r"""Turns the human ego logs of a ScenarioNet directory into MetaDrive demonstrations.

  python -m experiments.extract_waymo_demos --data_dir=$GOLD_WOMD_DIR --workdir=runs/womd_demos

The stage itself is `gold_jax.stages.extract_demos`.
"""

from gold_jax import launch
from gold_jax.stages.extract_demos import Config, run, validate


define_flags = launch.flags_of(Config)


main = launch.make_main(launch.validated_config(Config, validate), run)


if __name__ == '__main__':
  launch.run(main, define_flags)
