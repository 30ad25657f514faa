r"""Evaluates a saved guide, student or expert on a task.

  python -m experiments.evaluate --ckpt=runs/cc/gold --episodes=10 --plot

The stage itself is `gold_jax.stages.evaluate`.
"""

from gold_jax import launch
from gold_jax.stages.evaluate import Config, run


define_flags = launch.flags_of(Config, workdir=False)


def parse_flags(values) -> Config:
  config = launch.config_from_flags(Config, values)
  if not config.ckpt:
    raise ValueError('--ckpt is required')
  return config


main = launch.make_main(parse_flags, run, workdir_flag=None)


if __name__ == '__main__':
  launch.run(main, define_flags)
