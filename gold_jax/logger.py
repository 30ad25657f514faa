"""Metric logging to a CSV file and TensorBoard, safe to resume after a crash.

`metrics.csv` has a `step` column and one column per metric key, in order of first
appearance; a row holds only the metrics of one `write` (other cells are empty). A key seen
for the first time rewrites the file with the wider header (atomically). On resume from a
checkpoint at step `s`, `MetricLogger(run_dir, resume_step=s)` (or `truncate_after(s)`) drops
rows logged after `s`, so replayed steps are neither lost nor duplicated, and tells
TensorBoard to hide its events after `s`.
"""

import csv
import os
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from gold_jax.files import atomic_open

STEP = 'step'


def _format(key: str, value) -> str:
  """One CSV cell; float32 values use their shortest round-trip form."""
  value = np.asarray(value)
  if value.size != 1:
    raise ValueError(f'metric {key!r} must be a scalar, got shape {value.shape}')
  value = value.reshape(())
  if value.dtype == np.bool_ or np.issubdtype(value.dtype, np.integer):
    return str(int(value))
  if value.dtype == np.float32:
    return str(value)
  if np.issubdtype(value.dtype, np.floating):
    return repr(float(value))
  raise TypeError(f'metric {key!r} must be numeric, got {value.dtype}')


def _read_rows(path: str) -> Tuple[List[str], List[List[str]]]:
  """Header and complete rows; a last line cut short by a crash is dropped."""
  with open(path, newline='') as f:
    text = f.read()
  if text and not text.endswith('\n'):
    text = text[:text.rfind('\n') + 1]
  rows = list(csv.reader(text.splitlines()))
  if not rows:
    return [], []
  header = rows[0]
  if not header or header[0] != STEP:
    raise ValueError(f'{path}: not a metrics file (first column must be {STEP!r})')
  return header, [row for row in rows[1:] if len(row) == len(header)]


def _write_rows(path: str, header: List[str], rows: List[List[str]]) -> None:
  """Replaces `path` atomically by a CSV with `header`, padding short rows with blanks."""
  with atomic_open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(row + [''] * (len(header) - len(row)) for row in rows)


def read_csv(path: str) -> Dict[str, np.ndarray]:
  """Columns of a metrics CSV: `step` as int64, metrics as float64 with NaN for blanks."""
  header, rows = _read_rows(os.fspath(path))
  columns = {}
  for i, name in enumerate(header):
    cells = [row[i] for row in rows]
    if name == STEP:
      columns[name] = np.array([int(c) for c in cells], np.int64)
    else:
      columns[name] = np.array([float(c) if c else np.nan for c in cells], np.float64)
  return columns


def metric_series(columns: Mapping[str, np.ndarray], key: str) -> Tuple[np.ndarray, np.ndarray]:
  """`(steps, values)` of one metric from `read_csv` output, rows without it removed."""
  if key not in columns:
    raise KeyError(f'metric {key!r} not logged; available: {sorted(columns)}')
  present = ~np.isnan(columns[key])
  return columns[STEP][present], columns[key][present]


class MetricLogger:
  """Appends metric dicts to `run_dir/metrics.csv` and (optionally) TensorBoard.

  Keys are written as given, so they should carry their prefix (`training/`, `evaluation/`,
  `loss/`); `write(..., prefix='evaluation/')` prepends one to every key.
  """

  def __init__(self, run_dir: str, use_tensorboard: bool = True,
               resume_step: Optional[int] = None, filename: str = 'metrics.csv'):
    self.run_dir = os.fspath(run_dir)
    os.makedirs(self.run_dir, exist_ok=True)
    self.path = os.path.join(self.run_dir, filename)
    self._columns = [STEP]
    self._file = None
    self._use_tensorboard = use_tensorboard
    self._tensorboard = None
    if os.path.exists(self.path):
      header, rows = _read_rows(self.path)
      self._columns = header or [STEP]
      _write_rows(self.path, self._columns, rows)  # Drops a partial last line, if any.
    else:
      _write_rows(self.path, self._columns, [])
    if resume_step is not None:
      self.truncate_after(resume_step)
    else:
      self._open(purge_step=None)

  @property
  def columns(self) -> List[str]:
    return list(self._columns)

  def _open(self, purge_step: Optional[int]) -> None:
    self._file = open(self.path, 'a', newline='')
    self._csv = csv.writer(self._file)
    if self._use_tensorboard:
      from tensorboardX import SummaryWriter  # Imported here: it is slow and optional.
      self._tensorboard = SummaryWriter(os.path.join(self.run_dir, 'tensorboard'),
                                        purge_step=purge_step, flush_secs=30)

  def _close_handles(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
    if self._tensorboard is not None:
      self._tensorboard.close()
      self._tensorboard = None

  def write(self, step: int, metrics: Mapping[str, object], prefix: str = '') -> None:
    """Logs scalar `metrics` at `step` (one CSV row, one TensorBoard scalar each)."""
    if self._file is None:
      raise ValueError(f'{self.path}: logger is closed')
    cells = {prefix + key: _format(prefix + key, value) for key, value in metrics.items()}
    if STEP in cells:
      raise ValueError(f'{STEP!r} is reserved for the step column')
    new = [key for key in cells if key not in self._columns]
    if new:
      self._file.close()
      _, rows = _read_rows(self.path)
      self._columns += new
      _write_rows(self.path, self._columns, rows)
      self._file = open(self.path, 'a', newline='')
      self._csv = csv.writer(self._file)
    self._csv.writerow([str(int(step))] + [cells.get(key, '') for key in self._columns[1:]])
    self._file.flush()
    if self._tensorboard is not None:
      for key, cell in cells.items():
        self._tensorboard.add_scalar(key, float(cell), int(step))

  def truncate_after(self, step: int) -> None:
    """Removes rows logged after `step` and hides TensorBoard events after it (resumption)."""
    self._close_handles()
    header, rows = _read_rows(self.path)
    _write_rows(self.path, header or [STEP], [row for row in rows if int(row[0]) <= step])
    self._open(purge_step=int(step) + 1)

  def flush(self) -> None:
    if self._file is not None:
      self._file.flush()
    if self._tensorboard is not None:
      self._tensorboard.flush()

  def close(self) -> None:
    self._close_handles()

  def __enter__(self) -> 'MetricLogger':
    return self

  def __exit__(self, *exc) -> None:
    self.close()
