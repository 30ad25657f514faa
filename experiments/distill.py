r"""GOLD online distillation: a frozen offline guide jump-starts an IQL or CVPO student.

  python -m experiments.distill --task=Car-Circle --guide=dt --guide_ckpt=runs/guide_dt \
      --backbone=iql --workdir=runs/gold_car_circle

The stage itself is `gold_jax.stages.distill`.
"""

import json

from gold_jax import launch
from gold_jax.stages.distill import Config, train_and_evaluate, validate


# The student is the mission's 2x256 MLP from the command line; the protocol version is the
# library's, recorded with the run.
_NOT_FLAGS = ('hidden_dims', 'eval_protocol')


define_flags = launch.flags_of(Config, skip=_NOT_FLAGS)


def config_from_flags(values) -> Config:
  """The Config of parsed flags (`values`: absl FLAGS); bad values raise ValueError."""
  config = launch.config_from_flags(Config, values, skip=_NOT_FLAGS)
  validate(config)
  return config


def _run_and_print(config: Config, workdir: str) -> None:
  print(json.dumps(train_and_evaluate(config, workdir), indent=1))


main = launch.make_main(config_from_flags, _run_and_print)


if __name__ == '__main__':
  launch.run(main, define_flags)
