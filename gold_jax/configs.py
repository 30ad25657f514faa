"""Nested config dataclasses: built from dicts (JSON, presets) and merged with overrides.

A stage's Config holds smaller configs as fields, e.g. `distill.Config(loop=LoopConfig(...),
schedule=jsrl.ScheduleConfig(...), multiplier=lagrange.Config(...))`. Each such dataclass calls
`coerce(self)` in `__post_init__`, so a field given as a dict (from a saved config.json or a
preset) becomes its config class, and a list becomes a tuple (configs stay hashable: learner
configs are static arguments of jitted functions):

    distill.Config(**json.load(f))
    distill.Config(**merge(presets.stages('laptop', task)['distill'], loop={'batch_size': 64}))
"""

import dataclasses
import typing
from typing import Any, Dict, Mapping


def _config_class(annotation):
  """The config dataclass an annotation names (also inside Optional[...]), else None."""
  if typing.get_origin(annotation) is typing.Union:
    rest = [a for a in typing.get_args(annotation) if a is not type(None)]
    annotation = rest[0] if len(rest) == 1 else None
  if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
    return annotation
  return None


def coerce(config) -> None:
  """In a frozen config's `__post_init__`: a dict given for a config-typed field becomes that
  config (the keys it lacks from the field's default), a list becomes a tuple."""
  hints = typing.get_type_hints(type(config))
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if isinstance(value, Mapping):
      cls = _config_class(hints.get(field.name))
      if cls is not None:  # Over the field's own default: `loop={'batch_size': 64}` keeps the
        default = field.default  # stage's other loop settings.
        object.__setattr__(config, field.name, dataclasses.replace(default, **value)
                           if isinstance(default, cls) else cls(**value))
    elif isinstance(value, list):
      object.__setattr__(config, field.name, tuple(value))


def merge(base: Mapping[str, Any], **overrides: Any) -> Dict[str, Any]:
  """`base` updated with `overrides`, recursively where both hold a dict (a nested config's
  overrides), so `merge({'loop': {'utd': 2}}, loop={'batch_size': 64})` keeps the utd."""
  merged = dict(base)
  for key, value in overrides.items():
    if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
      value = merge(merged[key], **value)
    merged[key] = value
  return merged


def flatten(tree: Mapping[str, Any], prefix: str = '') -> Dict[str, Any]:
  """A nested config dict as {'loop.batch_size': 256, ...} (dotted names, as the flags)."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping) and value and all(isinstance(k, str) for k in value):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[prefix + key] = value
  return flat


def replace(config, **overrides: Any):
  """`dataclasses.replace` that reaches into nested configs:
  `replace(config, loop={'batch_size': 64})` changes only the loop's batch size."""
  changes = {}
  for key, value in overrides.items():
    current = getattr(config, key)
    if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
      value = replace(current, **value)
    changes[key] = value
  return dataclasses.replace(config, **changes)
