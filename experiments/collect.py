r"""Trains an expert with SAC-Lagrangian and records its demonstrations.

  python -m experiments.collect --task=Car-Circle --expert_steps=100000 --episodes=50 \
      --workdir=runs/cc/expert

The stage itself is `gold_jax.stages.collect`.
"""

from gold_jax import launch
from gold_jax.stages.collect import Config, run, validate


define_flags = launch.flags_of(Config)


main = launch.make_main(launch.validated_config(Config, validate), run)


if __name__ == '__main__':
  launch.run(main, define_flags)
