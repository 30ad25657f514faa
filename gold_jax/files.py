"""Atomic file writes: a reader, or a crash, sees the old file or the new one, never a part.

Every writer goes through `atomic_path`: the content goes to a hidden temporary file beside the
target (same directory, same suffix, so format-by-suffix writers work), is flushed to disk,
then renamed over the target. If the writer fails, the temporary file is removed and the
target is untouched.
"""

import contextlib
import json
import os
import tempfile
from typing import IO, Any, Iterator, Optional


@contextlib.contextmanager
def atomic_path(path) -> Iterator[str]:
  """Yields a temporary path to write; on success it replaces `path`, on failure it goes."""
  path = os.path.abspath(os.fspath(path))
  directory, name = os.path.split(path)
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.{name}.',
                             suffix='.tmp' + os.path.splitext(name)[1])
  os.close(fd)
  try:
    yield tmp
    fd = os.open(tmp, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


@contextlib.contextmanager
def atomic_open(path, mode: str = 'w', **kwargs) -> Iterator[IO]:
  """`open(path, mode)` for writing, atomically (`mode` 'w' or 'wb')."""
  with atomic_path(path) as tmp:
    with open(tmp, mode, **kwargs) as f:
      yield f


def write_text(path, text: str) -> None:
  with atomic_open(path) as f:
    f.write(text)


def write_json(path, value: Any, indent: Optional[int] = 2) -> None:
  """Writes `value` as JSON, atomically."""
  with atomic_open(path) as f:
    json.dump(value, f, indent=indent)


def read_json(path) -> Optional[Any]:
  """The JSON in `path`, or None when the file does not exist."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)
