"""Environment throughput: env steps per second, single and vectorised.

For each task: one `SafeEnv` stepped with random actions, then `make_vec(task, n)` in-process
(sync) and with one process per copy (async). A vectorised rate counts every copy's step
(`n` per call). Episodes reset as they end; set-up and the first reset are not timed.
In-process measurements also give the rate per second of this process's CPU time, which
stays meaningful when other programs compete for the cores (a wall-clock rate does not). A task
that cannot be built here (say, MetaDrive-Waymo without a scenario directory) is reported as
unavailable, so the script always completes. MetaDrive allows one simulator per process, so it
has no sync vectorised rate.

  python -m experiments.bench_envs --tasks=Car-Circle,Point-Goal --steps=2000
"""

import time
from typing import Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np

from gold_jax import envs
from gold_jax import launch
from gold_jax.envs import registry

DEFAULT_TASKS = [t for t in registry.TASKS if t != 'MetaDrive-Waymo']



def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  kw = {'flag_values': fv}
  flags.DEFINE_list('tasks', DEFAULT_TASKS, 'Tasks (names or simulator ids).', **kw)
  flags.DEFINE_integer('steps', 2000, 'Timed env steps per measurement.', **kw)
  flags.DEFINE_integer('num_envs', 4, 'Copies in the vectorised measurements.', **kw)
  flags.DEFINE_integer('seed', 0, 'Seed of the envs and of the random actions.', **kw)


class _Timer:
  """Wall-clock and process CPU seconds of a block."""

  def __enter__(self):
    self._wall, self._cpu = time.perf_counter(), time.process_time()
    return self

  def __exit__(self, *exc):
    self.wall = time.perf_counter() - self._wall
    self.cpu = time.process_time() - self._cpu


def single_rate(task: str, steps: int, seed: int) -> Tuple[float, float]:
  """Env steps per wall second and per CPU second of one env under random actions."""
  with envs.make(task, seed=seed) as env:
    env.reset()
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1.0, 1.0, (steps, env.act_dim)).astype(np.float32)
    with _Timer() as timer:
      for action in actions:
        *_, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
          env.reset()
    return steps / timer.wall, steps / timer.cpu


def vector_rate(task: str, steps: int, n: int, asynchronous: bool,
                seed: int) -> Tuple[float, Optional[float]]:
  """Env steps (all copies together) per wall second and, in-process, per CPU second."""
  with envs.make_vec(task, n, seed=seed, asynchronous=asynchronous) as venv:
    venv.reset()
    calls = max(1, steps // n)
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1.0, 1.0, (calls, n, venv.act_dim)).astype(np.float32)
    with _Timer() as timer:
      for action in actions:
        venv.step(action)
    return calls * n / timer.wall, None if asynchronous else calls * n / timer.cpu


def _measure(fn, *args) -> Tuple[Optional[float], Optional[float]]:
  try:
    return fn(*args)
  except Exception as e:  # pylint: disable=broad-except
    print(f'  unavailable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}')
    return None, None


def benchmark(tasks: Sequence[str], steps: int, num_envs: int, seed: int) -> List[Dict]:
  """Measures every task; returns one row per task (rates in env steps/s, None if n/a)."""
  rows = []
  for task in tasks:
    print(f'{task} ...', flush=True)
    spec = envs.get_spec(task)
    row = dict(task=task)
    row['single'], row['single_cpu'] = _measure(single_rate, task, steps, seed)
    row['sync'], row['sync_cpu'] = None, None
    if spec.simulator != registry.METADRIVE:
      row['sync'], row['sync_cpu'] = _measure(vector_rate, task, steps, num_envs, False, seed)
    row['async'], _ = _measure(vector_rate, task, steps, num_envs, True, seed)
    rows.append(row)
  return rows


def format_table(rows: Sequence[Dict], num_envs: int) -> str:
  """The rows as an aligned text table."""
  columns = {'single': 'single', 'single_cpu': 'single/cpu-s',
             'sync': f'sync x{num_envs}', 'sync_cpu': f'sync x{num_envs}/cpu-s',
             'async': f'async x{num_envs}'}
  header = ['task'] + list(columns.values())
  cells = [[r['task']] + ['-' if r[k] is None else f'{r[k]:,.0f}' for k in columns]
           for r in rows]
  widths = [max(len(line[i]) for line in [header] + cells) for i in range(len(header))]
  fmt = lambda line: '  '.join([line[0].ljust(widths[0])] +
                               [c.rjust(w) for c, w in zip(line[1:], widths[1:])])
  rule = '-' * len(fmt(header))
  return '\n'.join([fmt(header), rule] + [fmt(line) for line in cells])


def run(tasks: Sequence[str], steps: int, num_envs: int, seed: int) -> List[Dict]:
  rows = benchmark(tasks, steps, num_envs, seed)
  print(f'\nenv steps per second of wall-clock time, and per second of CPU time (/cpu-s); '
        f'{steps} random-action steps per measurement')
  print(format_table(rows, num_envs))
  return rows


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  run(tasks=f.tasks, steps=f.steps, num_envs=f.num_envs, seed=f.seed)


if __name__ == '__main__':
  launch.run(main, define_flags)
