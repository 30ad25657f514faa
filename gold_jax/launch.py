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

import collections.abc
import dataclasses
import inspect
import io
import json
import os
import sys
import textwrap
import threading
import time
import tokenize
import traceback
import types
import typing
from typing import Any, Callable, Dict, Iterator, Mapping, NoReturn, Optional, Sequence

from absl import app
from absl import flags
from absl import logging

from gold_jax import configs, errors
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
  if saved is not None:  # Compared field by field, nested configs by their dotted names.
    flat_saved, flat_current = configs.flatten(saved), configs.flatten(current)
    differ = sorted(k for k in set(flat_saved) | set(flat_current)
                    if k not in may_differ and k.split('.')[0] not in may_differ
                    and flat_saved.get(k) != flat_current.get(k))
    if differ:
      raise errors.ConfigError(
          f'{workdir} holds a run with a different config ('
          + ', '.join(f'{k}: {flat_saved.get(k)!r} -> {flat_current.get(k)!r}'
                      for k in differ) + ')',
          hint='use another --workdir, or the saved values to resume that run')
  save_json(path, current)


def env_options(max_episode_steps: Optional[int]) -> Dict[str, Any]:
  """`envs.make` options of a `--max_episode_steps` override (None: the task's length)."""
  return {} if max_episode_steps is None else {'max_episode_steps': int(max_episode_steps)}


def config_from_flags(config_cls, values, skip: Sequence[str] = (), *, prefix: str = '') -> Any:
  """Builds `config_cls` from parsed absl flags of the same names (`prefix` + field name).

  Reads hand-written flags and those of `define_config_flags` alike: each value becomes the
  field's type (a list a tuple of ints, floats or strings; a JSON string a dict; 'none' of an
  Optional field None; an unannotated list a tuple of ints), and a field that is a config
  dataclass is built from its `<field>.` flags over its default. Fields without a flag, and
  those in `skip` (field or flag names), keep their defaults.
  """
  return config_cls(**_config_kwargs(config_cls, values, prefix, '', frozenset(skip)))


# -- Flags generated from a config dataclass ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Kind:
  """What flag a field annotation gets: kind is bool, int, float, str, enum, list, json or
  config; `item` is a list's item type, an enum's choices or a nested config class."""
  kind: str
  optional: bool = False
  item: Any = None


_SCALARS = {bool: 'bool', int: 'int', float: 'float', str: 'str'}
_SEQUENCES = (tuple, list, collections.abc.Sequence)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def _kind(annotation) -> Optional[_Kind]:
  """The flag kind of a field annotation, or None for a type no flag can hold."""
  optional = False
  if typing.get_origin(annotation) in (typing.Union, types.UnionType):
    args = typing.get_args(annotation)
    rest = [a for a in args if a is not type(None)]
    if len(rest) != 1:
      return None
    annotation, optional = rest[0], len(rest) < len(args)
  if annotation in _SCALARS:
    return _Kind(_SCALARS[annotation], optional)
  origin, args = typing.get_origin(annotation), typing.get_args(annotation)
  if origin is typing.Literal:
    return _Kind('enum', optional, args) if all(isinstance(a, str) for a in args) else None
  if origin in _SEQUENCES:
    items = {a for a in args if a is not Ellipsis}
    return _Kind('list', optional, items.pop()) if items in ({int}, {float}, {str}) else None
  if origin in _MAPPINGS or annotation in _MAPPINGS:
    return _Kind('json', optional)
  if isinstance(annotation, type) and dataclasses.is_dataclass(annotation) and not optional:
    return _Kind('config', False, annotation)
  return None


def _field_types(config_cls) -> Dict[str, Any]:
  try:
    return typing.get_type_hints(config_cls)
  except (NameError, TypeError):  # An annotation that does not resolve: keep it as written.
    return {f.name: f.type for f in dataclasses.fields(config_cls)}


def _field_default(field, instance=None) -> Any:
  """The field's value in `instance`, else its default (or default_factory()), else MISSING."""
  if instance is not None:
    return getattr(instance, field.name)
  if field.default is not dataclasses.MISSING:
    return field.default
  if field.default_factory is not dataclasses.MISSING:
    return field.default_factory()
  return dataclasses.MISSING


def _class_source(cls) -> str:
  """`cls`'s source. CPython 3.11 before 3.11.8 can fail to parse a module's AST with
  `SystemError: AST constructor recursion depth mismatch` while another thread also works on
  ASTs (python/cpython#106905); that race is retried."""
  for attempt in range(3):
    try:
      return inspect.getsource(cls)
    except SystemError:
      if attempt == 2:
        raise
      time.sleep(0.05)
  raise AssertionError('unreachable')


def _class_comments(cls) -> Dict[str, str]:
  try:
    source = textwrap.dedent(_class_source(cls))
  except (OSError, TypeError):  # No source (a class made in a REPL or by exec).
    return {}
  comments: Dict[str, list] = {}
  depth, statement, field, trailing, column, previous = 0, [], None, None, 0, None
  try:
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
      kind = token.type
      if kind == tokenize.INDENT:
        depth += 1
      elif kind == tokenize.DEDENT:
        depth -= 1
      elif kind == tokenize.COMMENT:
        if statement:  # After code of the statement (a field's own line or lines).
          if field is not None:
            comments.setdefault(field, []).append(token.string)
        elif trailing is not None and token.start[1] > column and previous in (
            tokenize.NL, tokenize.NEWLINE):
          comments[trailing].append(token.string)  # A comment-only line indented deeper.
        else:
          trailing = None
      elif kind == tokenize.NEWLINE:
        if field is not None and field in comments:
          trailing, column = field, statement[0].start[1]
        else:
          trailing = None
        statement, field = [], None
      elif kind == tokenize.NL:
        if not statement and previous != tokenize.COMMENT:
          trailing = None  # A blank line ends a comment.
      elif kind != tokenize.ENDMARKER:
        if not statement:
          trailing = None
        statement.append(token)
        if (len(statement) == 2 and depth == 1 and statement[0].type == tokenize.NAME
            and token.string == ':'):
          field = statement[0].string
      previous = kind if kind in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE) else None
  except (tokenize.TokenError, IndentationError):
    return {}
  return {name: ' '.join(c.lstrip('#').strip() for c in parts)
          for name, parts in comments.items()}


def field_comments(config_cls) -> Dict[str, str]:
  """Field name -> the `# comment` after the field in the class source, joined with the
  comment-only lines below it that are indented deeper (its continuation); base classes'
  fields included."""
  comments = {}
  for cls in reversed(config_cls.__mro__):
    if dataclasses.is_dataclass(cls):
      comments.update(_class_comments(cls))
  return comments


class _NoneOrParser(flags.ArgumentParser):
  """The parser of an Optional field's flag: 'none' (any case) is None, the rest `inner`'s."""

  def __init__(self, inner):
    self.inner = inner
    self.syntactic_help = ' or '.join(h for h in (inner.syntactic_help, "'none'") if h)

  def parse(self, argument):
    if argument is None or (isinstance(argument, str) and argument.strip().lower() == 'none'):
      return None
    return self.inner.parse(argument)

  def flag_type(self):
    return self.inner.flag_type()


@dataclasses.dataclass(frozen=True)
class _FlagSpec:
  name: str
  kind: _Kind
  default: Any
  help: str


def _flag_specs(config_cls, instance, prefix, relative, skip, helps) -> Iterator[_FlagSpec]:
  types_, comments = _field_types(config_cls), field_comments(config_cls)
  for field in dataclasses.fields(config_cls):
    name, rel = prefix + field.name, relative + field.name
    if not field.init or name in skip or rel in skip:
      continue
    annotation = types_.get(field.name, field.type)
    kind = _kind(annotation)
    if kind is None:
      raise TypeError(f'{config_cls.__name__}.{field.name}: no flag type for {annotation!r}; '
                      f'pass skip=({rel!r},) and define --{name} by hand')
    default = _field_default(field, instance)
    if kind.kind == 'config':
      nested = None if default is dataclasses.MISSING else default
      yield from _flag_specs(kind.item, nested, name + '.', rel + '.', skip, helps)
      continue
    text = (helps.get(name) or helps.get(rel) or field.metadata.get('help')
            or comments.get(field.name) or field.name)
    yield _FlagSpec(name, kind, None if default is dataclasses.MISSING else default, text)


def _calling_module() -> Optional[str]:
  """The module that called into this one, named as absl names it (flags' --help grouping)."""
  frame = sys._getframe(1)  # pylint: disable=protected-access
  while frame is not None and frame.f_globals.get('__name__') == __name__:
    frame = frame.f_back
  name = frame.f_globals.get('__name__') if frame is not None else None
  return sys.argv[0] if name == '__main__' else name


def _define_flag(spec: _FlagSpec, flag_values, module_name) -> None:
  kind, default = spec.kind, spec.default
  kw = {'flag_values': flag_values, 'module_name': module_name}
  if kind.kind == 'list':
    flags.DEFINE_list(spec.name, None if default is None else [str(v) for v in default],
                      spec.help, **kw)
  elif kind.kind == 'json':
    flags.DEFINE_string(spec.name, None if default is None else json.dumps(default),
                        spec.help, **kw)
  elif not kind.optional and kind.kind == 'bool':
    flags.DEFINE_bool(spec.name, default, spec.help, **kw)
  elif not kind.optional and kind.kind == 'int':
    flags.DEFINE_integer(spec.name, default, spec.help, **kw)
  elif not kind.optional and kind.kind == 'float':
    flags.DEFINE_float(spec.name, default, spec.help, **kw)
  elif not kind.optional and kind.kind == 'str':
    flags.DEFINE_string(spec.name, default, spec.help, **kw)
  elif not kind.optional and kind.kind == 'enum':
    flags.DEFINE_enum(spec.name, default, list(kind.item), spec.help, **kw)
  else:  # Optional[X]: X's parser, and 'none' gives None.
    inner = {'bool': flags.BooleanParser, 'int': flags.IntegerParser,
             'float': flags.FloatParser, 'str': flags.ArgumentParser}
    parser = _NoneOrParser(flags.EnumParser(list(kind.item)) if kind.kind == 'enum'
                           else inner[kind.kind]())
    if kind.kind == 'bool':  # A BooleanFlag, so --noNAME works too.
      flag = flags.BooleanFlag(spec.name, default, spec.help)
      flag.parser = parser
      flags.DEFINE_flag(flag, flag_values, module_name)
    else:
      flags.DEFINE(parser, spec.name, default, spec.help, flag_values, flags.ArgumentSerializer(),
                   module_name=module_name)


def define_config_flags(config_cls, flag_values: flags.FlagValues = flags.FLAGS, *,
                        skip: Sequence[str] = (),
                        help_overrides: Optional[Mapping[str, str]] = None,
                        prefix: str = '') -> Sequence[str]:
  """Defines one flag per field of the dataclass `config_cls`, so the config is the single
  source of the flags; `config_from_flags(config_cls, flag_values, prefix=prefix)` reads them.

  A flag is named `prefix` + field name; its default is the field's default (or
  default_factory()); its help is the `# comment` after the field in the class source (with
  the deeper-indented comment-only lines below it), `metadata['help']`, or the field name;
  `help_overrides` (flag name, with or without `prefix` -> text) wins. By annotation: bool, int,
  float, str, Literal['a', 'b'] (an enum); Optional[X] is X's flag with 'none' for None;
  Tuple[int, ...] / Sequence[float] / Tuple[str, ...] a comma-separated list; Dict / Mapping a
  JSON string; a nested config dataclass its own fields as `--<field>.<name>` flags.

  Names in `skip` (with or without `prefix`; `field.name` for a nested field, `field` for a
  whole nested config) get no flag, e.g. those a launcher defines by hand. Any other flag
  already on `flag_values` raises `flags.DuplicateFlagError` before anything is defined; an
  annotation no flag can hold raises TypeError. Returns the names of the flags defined.
  """
  module_name = _calling_module()
  specs = list(_flag_specs(config_cls, None, prefix, '', frozenset(skip),
                           dict(help_overrides or {})))
  taken = [spec.name for spec in specs if spec.name in flag_values]
  if taken:
    raise flags.DuplicateFlagError(
        f'{config_cls.__name__}: --{", --".join(taken)} already defined on this FlagValues; '
        f'pass skip={tuple(n[len(prefix):] for n in taken)!r} to keep '
        f'{"that flag" if len(taken) == 1 else "those flags"}')
  for spec in specs:
    _define_flag(spec, flag_values, module_name)
  return tuple(spec.name for spec in specs)


def _config_kwargs(config_cls, values, prefix, relative, skip) -> Dict[str, Any]:
  types_, kwargs = _field_types(config_cls), {}
  for field in dataclasses.fields(config_cls):
    name, rel = prefix + field.name, relative + field.name
    if not field.init or name in skip or rel in skip:
      continue
    kind = _kind(types_.get(field.name, field.type))
    if kind is not None and kind.kind == 'config' and name not in values:
      nested = _config_kwargs(kind.item, values, name + '.', rel + '.', skip)
      if nested:
        base = _field_default(field)
        kwargs[field.name] = (kind.item(**nested) if base is dataclasses.MISSING
                              else dataclasses.replace(base, **nested))
      continue
    if name not in values:
      continue
    value = _flag_value(name, values[name].value, kind)
    if value is None and not (kind and kind.optional) and (
        _field_default(field) is dataclasses.MISSING):
      raise errors.ConfigError(f'--{name} is required')
    kwargs[field.name] = value
  return kwargs


_WORDS = {int: 'integers', float: 'numbers', str: 'strings'}


def _flag_value(name: str, value, kind: Optional[_Kind]) -> Any:
  """A parsed flag's value as a value of its field (see `config_from_flags`)."""
  if kind is None:  # An annotation without a flag kind: lists are integers, as always.
    kind = _Kind('list', False, int) if isinstance(value, list) else None
    if kind is None:
      return value
  if value is None:
    return None
  if kind.optional and isinstance(value, str) and value.strip().lower() in ('none', 'null'):
    return None
  if kind.kind == 'list':
    if isinstance(value, str):
      value = flags.ListParser().parse(value)
    if kind.optional and [str(v).lower() for v in value] == ['none']:
      return None
    try:
      return tuple(kind.item(v) for v in value)
    except (TypeError, ValueError) as e:
      raise errors.ConfigError(f'--{name} must be {_WORDS[kind.item]}, got {value}') from e
  if kind.kind == 'json' and isinstance(value, str):
    try:
      parsed = json.loads(value)
    except json.JSONDecodeError as e:
      raise errors.ConfigError(f'--{name} is not valid JSON ({e}): {value!r}',
                               hint=f'give a JSON object, such as --{name}=\'{{"key": 1}}\'') from e
    if parsed is None and kind.optional:
      return None
    if not isinstance(parsed, dict):
      raise errors.ConfigError(f'--{name} must be a JSON object, got {value!r}')
    return parsed
  if isinstance(value, str) and kind.kind in ('bool', 'int', 'float'):
    parser = {'bool': flags.BooleanParser, 'int': flags.IntegerParser,
              'float': flags.FloatParser}[kind.kind]()
    try:
      return parser.parse(value)
    except ValueError as e:
      raise errors.ConfigError(f'--{name} must be a {parser.flag_type()}, got {value!r}') from e
  return value


def validated_config(config_cls, validate_fn: Callable) -> Callable:
  """`parse_fn` of `make_main` for a launcher whose flags mirror `config_cls` field by field."""

  def parse(values):
    config = config_from_flags(config_cls, values)
    validate_fn(config)
    return config

  return parse


def flags_of(config_cls, *, workdir: bool = True, workdir_default: Optional[str] = None,
             skip: Sequence[str] = ()) -> Callable[..., None]:
  """A launcher's `define_flags(fv=FLAGS)`: one flag per field of `config_cls`
  (`define_config_flags`, its comments the help) and, with `workdir`, `--workdir` (required
  unless it has a default)."""

  def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    define_config_flags(config_cls, fv, skip=skip)
    if workdir:
      flags.DEFINE_string('workdir', workdir_default, 'Run directory.', flag_values=fv)

  return define_flags


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


class _MainThreadStderr:
  """stderr that drops what threads other than the main one write, unless --verbose.

  A failed checkpoint read leaves orbax's event-loop threads behind; while the error unwinds,
  they can print tracebacks of their own ("Event loop is closed") that would bury the two
  lines of `fail`. The launcher's own output comes from the main thread.
  """

  def __init__(self, stream):
    self._stream = stream

  def write(self, text):
    if threading.current_thread() is threading.main_thread() or _verbose():
      return self._stream.write(text)
    return len(text)

  def __getattr__(self, name):
    return getattr(self._stream, name)


def run(main: Callable, define_flags: Optional[Callable[[], None]] = None) -> None:
  """`app.run(main)` for a launcher: defines its flags (and `--verbose`), parses the command
  line, runs `main` with readable errors (see the module docstring)."""
  if define_flags is not None:
    define_flags()
  if 'verbose' not in flags.FLAGS:
    flags.DEFINE_bool('verbose', False,
                      f'On an input error, also print the traceback (or set {VERBOSE_ENV}=1).')
  sys.stderr = _MainThreadStderr(sys.stderr)
  app.run(readable_errors(main), flags_parser=_parse_flags)
