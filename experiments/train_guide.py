r"""Trains an offline guide (Decision Transformer or behaviour cloning) on demonstrations.

  python -m experiments.train_guide --algo=dt --dataset=runs/cc/expert/dataset.hdf5 \
      --workdir=runs/cc/dt

The stage itself is `gold_jax.stages.train_guide`.
"""

from gold_jax import launch
from gold_jax.stages.train_guide import Config, run, validate


define_flags = launch.flags_of(Config)


main = launch.make_main(launch.validated_config(Config, validate), run)


if __name__ == '__main__':
  launch.run(main, define_flags)
