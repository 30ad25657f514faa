"""Orbax checkpoints of learner states, with the config and run metadata as JSON beside them.

Each step directory holds two items, written together and finalised atomically by orbax:
`state` (every array leaf of the learner state: parameters, optimiser states, target
parameters, the step counter and the RNG key) and `metadata` (a JSON file: the config as a
dict, the state and config class names, `obs_dim`/`act_dim` where the state has them, and any
`extra` JSON-able fields such as the task name). Static fields of the state (the config, the
optimiser's update functions) are not saved; `restore` takes them from a template built with
the same config, and refuses a checkpoint whose saved config differs from the template's.

A damaged newest checkpoint (truncated or partly written files) does not stop a run: `restore`
of the latest step and `latest_intact_step` skip it with a warning and use the previous one.
"""

import dataclasses
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from gold_jax.errors import CheckpointError, CorruptCheckpointError, MissingCheckpointError

_STATE, _META = 'state', 'metadata'


def _config_dict(config) -> Optional[Dict[str, Any]]:
  """The config as a JSON-normalised dict (tuples become lists), or None without a config."""
  if config is None:
    return None
  if not dataclasses.is_dataclass(config):
    raise TypeError(f'state.config must be a dataclass, got {type(config).__name__}')
  return json.loads(json.dumps(dataclasses.asdict(config)))


def _class_name(obj) -> str:
  return f'{type(obj).__module__}.{type(obj).__qualname__}'


def _config_defaults(config) -> Dict[str, Any]:
  """The JSON-normalised defaults of a config dataclass's fields that have one."""
  if config is None:
    return {}
  defaults = {f.name: dataclasses.asdict(f.default) if dataclasses.is_dataclass(f.default)
              else f.default for f in dataclasses.fields(config)
              if f.default is not dataclasses.MISSING}
  return json.loads(json.dumps(defaults))


def _config_differences(saved: Optional[dict], current: Optional[dict],
                        defaults: Optional[dict] = None) -> List[str]:
  """Fields that differ; a field the saved config lacks is accepted when the template holds
  its default (a checkpoint written before the field existed behaves as that default)."""
  saved, current, defaults = saved or {}, current or {}, defaults or {}
  return [f'{name} (saved {saved.get(name, "<missing>")!r}, template '
          f'{current.get(name, "<missing>")!r})'
          for name in sorted(set(saved) | set(current)) if saved.get(name) != current.get(name)
          and not (name not in saved and name in defaults and current[name] == defaults[name])]


def _leaf_signature(leaf) -> Tuple[Tuple[int, ...], str]:
  """Shape and dtype as stored: typed PRNG keys are stored as their uint32 key data."""
  if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
    leaf = jax.random.key_data(leaf)
  if isinstance(leaf, (int, float, bool, np.number)) and not hasattr(leaf, 'shape'):
    return (), 'python'
  return tuple(leaf.shape), np.dtype(leaf.dtype).name


def _structure_differences(stored_tree, template) -> List[str]:
  """Leaves whose path, shape or dtype differ between the stored tree and the template."""
  stored = ocp.tree.to_flat_dict(stored_tree)
  wanted = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(template, keep_empty_nodes=True))
  problems = []
  for path in sorted(set(stored) | set(wanted)):
    name = '/'.join(path)
    if path not in stored:
      problems.append(f'{name}: not in checkpoint')
    elif path not in wanted:
      problems.append(f'{name}: not in template')
    else:
      have = tuple(stored[path].shape), np.dtype(stored[path].dtype).name
      want = _leaf_signature(wanted[path])
      if want[1] == 'python':
        want, have = (want[0], 'python'), (have[0], 'python')
      if have != want:
        problems.append(f'{name}: checkpoint {have[0]} {have[1]}, template {want[0]} {want[1]}')
  return problems


def _brief(error: Exception) -> str:
  """The error's type and message without tensorstore's long spec dump."""
  message = str(error).split(' [tensorstore_spec=')[0]
  return f'{type(error).__name__}: {message}'


def _json_dumps(metadata: Dict[str, Any]) -> str:
  try:
    return json.dumps(metadata)
  except (TypeError, ValueError) as e:
    raise TypeError(f'checkpoint metadata must be JSON-serialisable: {e}') from e


RUN_CHECKPOINTS = 'checkpoints'  # The folder of a run directory that holds its checkpoints.


def checkpoint_dir(path, of_run: bool = False) -> str:
  """The checkpoint directory of `path`: the `checkpoints/` folder of a run directory, else
  `path` itself, which must exist. With `of_run`, `path` is a run directory that may not have
  started yet: `path/checkpoints`, as given (not made absolute)."""
  if of_run:
    return os.path.join(os.fspath(path), RUN_CHECKPOINTS)
  path = os.path.abspath(os.fspath(path))
  if not os.path.isdir(path):
    raise MissingCheckpointError(f'checkpoint directory {path!r} does not exist')
  nested = os.path.join(path, RUN_CHECKPOINTS)
  return nested if os.path.isdir(nested) else path


class CheckpointManager:
  """Keeps the last `max_to_keep` checkpoints of a learner state under `directory`.

  `save` blocks until the checkpoint is on disk, so a crash right after it loses nothing;
  a crash during it leaves only a temporary directory that is never listed or restored.
  """

  def __init__(self, directory: str, max_to_keep: Optional[int] = 3):
    self.directory = os.path.abspath(os.fspath(directory))
    self._manager = ocp.CheckpointManager(
        self.directory,
        item_handlers={_STATE: ocp.StandardCheckpointHandler(),
                       _META: ocp.JsonCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False))

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def save(self, step: int, state, extra: Optional[Dict[str, Any]] = None) -> None:
    """Saves the array leaves of `state` and its JSON metadata as checkpoint `step`."""
    metadata = {'step': int(step), 'state_class': _class_name(state)}
    config = getattr(state, 'config', None)
    if config is not None:
      metadata['config_class'] = _class_name(config)
      metadata['config'] = _config_dict(config)
    for name in ('obs_dim', 'act_dim'):
      if isinstance(getattr(state, name, None), int):
        metadata[name] = getattr(state, name)
    metadata['extra'] = dict(extra or {})
    metadata = json.loads(_json_dumps(metadata))
    saved = self._manager.save(int(step), args=ocp.args.Composite(**{
        _STATE: ocp.args.StandardSave(state), _META: ocp.args.JsonSave(metadata)}))
    self._manager.wait_until_finished()
    if not saved:
      raise RuntimeError(f'orbax declined to save step {step} in {self.directory}')

  def all_steps(self) -> Sequence[int]:
    self._manager.reload()  # Another process (or a crash) may have changed the directory.
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def _resolve(self, step: Optional[int]) -> int:
    steps = self.all_steps()
    if step is None:
      if not steps:
        raise MissingCheckpointError(f'no checkpoints in {self.directory}')
      return steps[-1]
    if step not in steps:
      raise MissingCheckpointError(f'no checkpoint for step {step} in {self.directory} '
                              f'(available: {list(steps)})')
    return step

  def verify(self, step: int) -> None:
    """Raises `CorruptCheckpointError` unless checkpoint `step` reads back whole."""
    self.read_metadata(step)
    try:
      self._manager.restore(step, args=ocp.args.Composite(**{_STATE: ocp.args.StandardRestore()}))
    except Exception as e:  # Orbax and tensorstore raise many types for damaged files.
      raise CorruptCheckpointError(f'{self.step_dir(step)}: corrupt or truncated checkpoint '
                                   f'({_brief(e)})') from e

  def latest_intact_step(self, set_aside: bool = False,
                         check: Optional[Callable[[int], None]] = None) -> Optional[int]:
    """The newest step that reads back whole (`verify`, then `check(step)` if given), or None.

    Damaged newer steps are skipped with a warning; with `set_aside` (a run about to resume
    and save again) they are renamed `corrupt-<step>`, kept for inspection but no longer listed.
    """
    for step in reversed(self.all_steps()):
      try:
        self.verify(step)
        if check is not None:
          check(step)
        return step
      except CorruptCheckpointError as e:
        self._skip(step, e, set_aside)
    return None

  def _skip(self, step: int, error: Exception, set_aside: bool) -> None:
    logging.warning('skipping damaged checkpoint: %s', error)
    if set_aside:
      os.replace(self.step_dir(step), os.path.join(self.directory, f'corrupt-{step}'))
      self._manager.reload()

  def read_metadata(self, step: Optional[int] = None) -> Dict[str, Any]:
    """The JSON metadata of checkpoint `step` (the latest by default)."""
    step = self._resolve(step)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          **{_META: ocp.args.JsonRestore()}))
      metadata = restored[_META]
    except Exception as e:  # Orbax and tensorstore raise many types for damaged files.
      raise CorruptCheckpointError(f'{self.step_dir(step)}: unreadable checkpoint metadata '
                            f'({_brief(e)})') from e
    if not isinstance(metadata, dict):
      raise CorruptCheckpointError(f'{self.step_dir(step)}: checkpoint metadata missing or not '
                                   'a dict')
    return metadata

  def restore(self, template, step: Optional[int] = None):
    """Restores checkpoint `step` (the latest by default) into the structure of `template`.

    `template` is a state built by the learner's `init` with the same config; its static
    fields are kept and every array leaf is replaced by the saved one, bit for bit. Without
    `step`, a damaged latest checkpoint is skipped (with a warning) for the one before it.
    """
    if step is not None:
      return self._restore(template, step)
    steps = self.all_steps()
    while len(steps) > 1:
      try:
        return self._restore(template, steps[-1])
      except CorruptCheckpointError as e:
        self._skip(steps.pop(), e, set_aside=False)
    return self._restore(template, steps[-1] if steps else None)

  def _restore(self, template, step: Optional[int]):
    step = self._resolve(step)
    path = self.step_dir(step)
    metadata = self.read_metadata(step)
    template_config = getattr(template, 'config', None)
    if metadata.get('config') is not None or template_config is not None:
      differences = _config_differences(metadata.get('config'), _config_dict(template_config),
                                        _config_defaults(template_config))
      if differences:
        raise CheckpointError(f'{path}: saved with a different config; differing fields: '
                              + '; '.join(differences))
    try:
      stored = self._manager.item_metadata(step)[_STATE]
      problems = _structure_differences(stored.tree, template)
    except Exception as e:
      raise CorruptCheckpointError(f'{path}: corrupt or truncated checkpoint '
                                   f'({_brief(e)})') from e
    if problems:
      raise CheckpointError(f'{path}: state does not match the template: '
                            + '; '.join(problems))
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          **{_STATE: ocp.args.StandardRestore(template)}))
    except Exception as e:
      raise CorruptCheckpointError(f'{path}: corrupt or truncated checkpoint '
                                   f'({_brief(e)})') from e
    return restored[_STATE]

  def close(self) -> None:
    self._manager.close()

  def __enter__(self) -> 'CheckpointManager':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def save_pytree(path: str, tree, metadata: Optional[Dict[str, Any]] = None) -> None:
  """Writes one pytree (e.g. trained guide parameters) and JSON metadata to directory `path`.

  The directory appears atomically when complete; an existing one is an error.
  """
  path = os.path.abspath(os.fspath(path))
  metadata = json.loads(_json_dumps(dict(metadata or {})))
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
    checkpointer.save(path, args=ocp.args.Composite(**{
        _STATE: ocp.args.StandardSave(tree), _META: ocp.args.JsonSave(metadata)}))


def load_pytree(path: str, template=None) -> Tuple[Any, Dict[str, Any]]:
  """Reads `(tree, metadata)` written by `save_pytree`.

  Without a template the tree comes back as nested dicts (lists for sequences) of arrays.
  """
  path = os.path.abspath(os.fspath(path))
  if not os.path.isdir(path):
    raise MissingCheckpointError(f'no saved pytree at {path}')
  try:
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
      restored = checkpointer.restore(path, args=ocp.args.Composite(**{
          _STATE: ocp.args.StandardRestore(template), _META: ocp.args.JsonRestore()}))
  except Exception as e:
    raise CorruptCheckpointError(f'{path}: corrupt or truncated pytree checkpoint '
                          f'({_brief(e)})') from e
  return restored[_STATE], restored[_META]
