"""What the launchers in `experiments/` share: run configs on disk, flags to config, `main`.

A launcher defines its flags in a function and starts through `run`:

    main = launch.make_main(launch.validated_config(Config, validate), train)

    if __name__ == '__main__':
      launch.run(main, define_flags)

`run` parses the command line and calls `main`, turning the errors a person can fix into two
lines on stderr and exit status 2: a flag that does not parse or does not exist, a value the
config refuses, a bad dataset or checkpoint, an unknown task (`gold_jax.errors.GoldError`):

    error: /data/demos.hdf5: no such dataset file
    hint: a dataset is a DSRL-layout .hdf5 or .npz file with a task, ...

`--verbose` (or `GOLD_JAX_VERBOSE=1`) prints the traceback as well. Other exceptions are bugs
and keep their traceback.
"""

import dataclasses
import json
import os
import sys
import traceback
from typing import Any, Callable, Dict, NoReturn, Optional, Sequence

from absl import app
from absl import flags
from absl import logging

from gold_jax import errors
from gold_jax.files import read_json as load_json
from gold_jax.files import write_json as save_json

EXIT_USAGE = 2  # Exit status of a run stopped by input it cannot use.
VERBOSE_ENV = 'GOLD_JAX_VERBOSE'
_FLAG_HINT = 'run with --helpfull to list the flags'


def config_dict(config) -> Dict[str, Any]:
  """A config dataclass as a JSON-normalised dict (tuples become lists)."""
  return json.loads(json.dumps(dataclasses.asdict(config)))


def check_same_config(workdir: str, config, may_differ: Sequence[str] = ()) -> None:
  """Writes `workdir/config.json`; refuses a workdir that holds a run of another config.

  Fields in `may_differ` (budgets, output options) may change between a run and its resume.
  """
  path = os.path.join(workdir, 'config.json')
  current, saved = config_dict(config), load_json(path)
  if saved is not None:
    differ = sorted(k for k in set(saved) | set(current)
                    if k not in may_differ and saved.get(k) != current.get(k))
    if differ:
      raise errors.ConfigError(
          f'{workdir} holds a run with a different config ('
          + ', '.join(f'{k}: {saved.get(k)!r} -> {current.get(k)!r}' for k in differ) + ')',
          hint='use another --workdir, or the saved values to resume that run')
  save_json(path, current)


def env_options(max_episode_steps: Optional[int]) -> Dict[str, Any]:
  """`envs.make` options of a `--max_episode_steps` override (None: the task's length)."""
  return {} if max_episode_steps is None else {'max_episode_steps': int(max_episode_steps)}


def config_from_flags(config_cls, values, skip: Sequence[str] = ()) -> Any:
  """Builds `config_cls` from parsed absl flags of the same names (lists become int tuples)."""
  kwargs = {}
  for field in dataclasses.fields(config_cls):
    if field.name in skip or field.name not in values:
      continue
    value = values[field.name].value
    if isinstance(value, list):
      try:
        value = tuple(int(v) for v in value)
      except ValueError as e:
        raise errors.ConfigError(f'--{field.name} must be integers, got {value}') from e
    kwargs[field.name] = value
  return config_cls(**kwargs)


def validated_config(config_cls, validate_fn: Callable) -> Callable:
  """`parse_fn` of `make_main` for a launcher whose flags mirror `config_cls` field by field."""

  def parse(values):
    config = config_from_flags(config_cls, values)
    validate_fn(config)
    return config

  return parse


def make_main(parse_fn: Callable, run_fn: Callable, workdir_flag: Optional[str] = 'workdir'
              ) -> Callable:
  """The absl `main` of a launcher: `parse_fn(FLAGS)` -> config -> `run_fn(config, workdir)`.

  A ValueError of `parse_fn` becomes a `ConfigError`; `--<workdir_flag>` is required (without
  one, `run_fn(config)`). Orbax's per-checkpoint INFO logs are hidden unless `--verbosity` is
  given.
  """

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    if workdir_flag and not flags.FLAGS[workdir_flag].value:
      raise app.UsageError(f'--{workdir_flag} is required')
    try:
      config = parse_fn(flags.FLAGS)
    except errors.GoldError:
      raise
    except ValueError as e:
      raise errors.ConfigError(str(e)) from e
    if workdir_flag:
      run_fn(config, flags.FLAGS[workdir_flag].value)
    else:
      run_fn(config)

  return main


def _verbose() -> bool:
  if os.environ.get(VERBOSE_ENV, '').lower() not in ('', '0', 'false', 'no'):
    return True
  return 'verbose' in flags.FLAGS and flags.FLAGS.is_parsed() and bool(flags.FLAGS.verbose)


def fail(message: str, hint: str = '') -> NoReturn:
  """Prints `error: <message>` (and `hint: <hint>`) to stderr and exits with status 2."""
  sys.stdout.flush()
  sys.stderr.write(f'error: {message}\n' + (f'hint: {hint}\n' if hint else ''))
  sys.stderr.flush()
  if _verbose():
    sys.exit(EXIT_USAGE)
  # Leave without interpreter shutdown: a failed checkpoint read leaves orbax's event-loop
  # threads behind, and their shutdown tracebacks would bury the two lines above.
  os._exit(EXIT_USAGE)  # pylint: disable=protected-access


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e), _FLAG_HINT)


def readable_errors(main: Callable) -> Callable:
  """`main` with the project's errors and usage errors reported by `fail`."""

  def wrapped(argv):
    try:
      return main(argv)
    except (errors.GoldError, app.UsageError) as e:
      if _verbose():
        traceback.print_exc()
      hint = getattr(e, 'hint', '') or (_FLAG_HINT if isinstance(e, app.UsageError) else '')
      fail(str(e), hint)

  return wrapped


def run(main: Callable, define_flags: Optional[Callable[[], None]] = None) -> None:
  """`app.run(main)` for a launcher: defines its flags (and `--verbose`), parses the command
  line, runs `main` with readable errors (see the module docstring)."""
  if define_flags is not None:
    define_flags()
  if 'verbose' not in flags.FLAGS:
    flags.DEFINE_bool('verbose', False,
                      f'On an input error, also print the traceback (or set {VERBOSE_ENV}=1).')
  app.run(readable_errors(main), flags_parser=_parse_flags)
