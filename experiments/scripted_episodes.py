r"""Plays a scripted expert (`gold_jax.scripted`) on training-range episodes, with its cost
split by source: the measurements behind its gains (docs/results/experts/scripted.md).

  python -m experiments.scripted_episodes --task=Point-Button --episodes=10
  python -m experiments.scripted_episodes --task=Point-Button --episodes=5 \
      --gains=back_off=0,gremlin_reach=0,seek_buttons=false  # the controller of the Goal tasks
  python -m experiments.scripted_episodes --task=Car-Push --episodes=3 --random

Episode i resets with seed `--first_seed` + i. Seeds from 10^9 up belong to the evaluation,
demonstration and validation episodes of `gold_jax.protocol`, which tuning must not see: they
are refused. `--gains` acts on the Goal and Button controller only.
"""

import dataclasses

from absl import app
from absl import flags
import numpy as np

from gold_jax import errors, launch, scripted


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  kw = {'flag_values': fv}
  flags.DEFINE_string('task', 'Point-Button', f'One of {", ".join(scripted.TASKS)}.', **kw)
  flags.DEFINE_integer('episodes', 10, 'Episodes to play.', **kw)
  flags.DEFINE_integer('first_seed', 1000, 'Reset seed of the first episode (training range).',
                       **kw)
  flags.DEFINE_bool('random', False, 'Play uniformly random actions instead, for scale.', **kw)
  flags.DEFINE_list('gains', [], "Overrides of the task's gold_jax.scripted.Gains (Goal and "
                    'Button controller), as name=value: '
                    '--gains=gremlin_reach=0,seek_buttons=false.',
                    **kw)


def parse_gains(overrides, base: scripted.Gains = scripted.Gains()) -> scripted.Gains:
  """`base` with `name=value` overrides; a clear error for an unknown name."""
  fields = {f.name: f.type for f in dataclasses.fields(scripted.Gains)}
  values = {}
  for item in overrides:
    name, _, value = item.partition('=')
    if name not in fields or not value:
      raise ValueError(f'--gains: {item!r} is not name=value with name one of '
                       f'{", ".join(fields)}')
    if fields[name] in (bool, 'bool'):
      if value.lower() not in ('true', 'false', '1', '0'):
        raise ValueError(f'--gains: {name} takes true or false, not {value!r}')
      values[name] = value.lower() in ('true', '1')
    else:
      values[name] = float(value)
  return dataclasses.replace(base, **values)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  fv = flags.FLAGS
  try:
    task = scripted.check_task(fv.task)
    gains = parse_gains(fv.gains, scripted.gains_of(task))
    rows = scripted.episodes(fv.task, fv.episodes, fv.first_seed, gains, fv.random)
  except (errors.TaskError, ValueError) as e:
    raise app.UsageError(str(e)) from e
  keys = sorted({k for row in rows for k in row} - {'seed'},
                key=lambda k: (k.startswith('cost_'), k))
  print('seed ' + ' '.join(f'{k:>14}' for k in keys))
  for row in rows:
    print(f'{row["seed"]:4d} ' + ' '.join(f'{row.get(k, 0.0):14.2f}' for k in keys))
  print('mean ' + ' '.join(f'{np.mean([row.get(k, 0.0) for row in rows]):14.2f}'
                           for k in keys))


if __name__ == '__main__':
  launch.run(main, define_flags)
