"""Executors of a sweep's runs: a local process pool, or Ray tasks spread over a cluster.

A sweep is a graph of runs (expert, then guides, then online runs per task and seed). Both
executors take it the same way:

    executor = make_executor('ray', workers=2, cpus_per_run=1)   # or 'local'
    expert = executor.submit(job, ('expert', task, seed), name=f'{task}/seed{seed}/expert')
    guide = executor.submit(job, ('dt', task, seed), after=[expert], name=...)
    results = executor.gather([expert, guide])                   # In submission order.
    executor.close()

`job` is a module-level function (found by module and name in every worker) that returns a
small result (a dict). `gather` gives `{'error': ...}` for a run that raised or whose process
died, so one failed run never stops a sweep. A run starts once the runs in `after` have
finished (with Ray, a run whose dependency raised or died for good fails with it); their
results are not passed to it: runs exchange their outputs through the sweep's directory.

- `LocalExecutor`: `workers` spawned processes on this machine (1: every run in this process,
  in submission order).
- `RayExecutor`: each run is a Ray task declaring `cpus_per_run` and `gpus_per_run` (fractions
  allowed), with the tasks of `after` as object-reference arguments, so Ray starts it when they
  finish, on any node with free resources. A task whose worker dies is retried
  (`max_retries`); a sweep's runs resume from their own checkpoints, so a retry continues
  where the dead worker stopped. `address` joins a running cluster; without it a local Ray
  starts with `workers * cpus_per_run` CPUs. Every node needs the same Python environment and
  this code at the same path (`PYTHONPATH` is set for the tasks), and the sweep's directory on
  a file system they all see: `check_shared_dir` verifies it on every node.

JAX in a run with a GPU share sees only the devices Ray assigned to it (`CUDA_VISIBLE_DEVICES`),
allocates on demand (`XLA_PYTHON_CLIENT_PREALLOCATE=false`) and at most its share of the
device's memory (`XLA_PYTHON_CLIENT_MEM_FRACTION`, see `run_env`); a run without one is
pinned to the CPU (`JAX_PLATFORMS=cpu`).

Fault injection for tests: `GOLD_JAX_SWEEP_CRASH=<run name>|<seconds>|<marker file>` makes the
process of that run exit abruptly `seconds` after the run started, once: the marker file,
written just before, records that it already happened.
"""

import concurrent.futures as futures
import dataclasses
import importlib
import multiprocessing
import os
import sys
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

EXECUTORS = ('local', 'ray')
CRASH_ENV = 'GOLD_JAX_SWEEP_CRASH'
# Share of a run's GPU share JAX may allocate; the rest is left to the CUDA context of each
# process on the device.
GPU_MEMORY_HEADROOM = 0.95


def run_env(gpus_per_run: float) -> Dict[str, str]:
  """Environment variables of a run with `gpus_per_run` GPUs (0: CPU only)."""
  if gpus_per_run <= 0:
    return {'JAX_PLATFORMS': 'cpu'}
  fraction = min(gpus_per_run, 1.0) * GPU_MEMORY_HEADROOM
  return {'XLA_PYTHON_CLIENT_PREALLOCATE': 'false',
          'XLA_PYTHON_CLIENT_MEM_FRACTION': f'{fraction:.4g}'}


def _module_name(fn: Callable) -> str:
  """The name under which another process imports `fn`'s module (that of a launcher started
  with `python -m package.module` is `__main__` here)."""
  if fn.__module__ != '__main__':
    return fn.__module__
  spec = getattr(sys.modules['__main__'], '__spec__', None)
  if spec is None or not spec.name:
    raise ValueError(f'{fn.__qualname__} is defined in a script; start it with python -m')
  return spec.name


def _code_root(fn: Callable) -> str:
  """The directory from which `fn`'s top-level package is imported."""
  name = _module_name(fn)
  path = os.path.abspath(sys.modules[fn.__module__].__file__)
  for _ in range(name.count('.') + 1):
    path = os.path.dirname(path)
  return path


def _crash_timer(name: str) -> Optional[threading.Event]:
  """Arms the `GOLD_JAX_SWEEP_CRASH` hook for run `name`; set the event to disarm it."""
  spec = os.environ.get(CRASH_ENV, '')
  if spec.count('|') != 2:
    return None
  target, seconds, marker = spec.split('|')
  if target != name or os.path.exists(marker):
    return None
  disarmed = threading.Event()

  def crash():
    if not disarmed.wait(float(seconds)):
      with open(marker, 'w') as f:
        f.write(f'{name} exited at {time.time()}\n')
      os._exit(1)  # pylint: disable=protected-access  # A dead worker, not an exception.

  threading.Thread(target=crash, daemon=True).start()
  return disarmed


def call(module: str, qualname: str, args: Sequence[Any], name: str = '',
         *after: Any) -> Any:
  """Runs `module.qualname(*args)` (the body of every run, in any process)."""
  del after  # Finished runs this one waited for.
  fn = importlib.import_module(module)
  for part in qualname.split('.'):
    fn = getattr(fn, part)
  disarm = _crash_timer(name)
  try:
    return fn(*args)
  finally:
    if disarm is not None:
      disarm.set()


class Executor:
  """Runs a graph of runs; see the module docstring."""

  def submit(self, fn: Callable, args: Sequence[Any] = (), after: Sequence[Any] = (),
             name: str = '') -> Any:
    """Schedules `fn(*args)` after the runs `after`; returns its handle."""
    raise NotImplementedError

  def gather(self, handles: Sequence[Any]) -> List[Any]:
    """Waits for the runs `handles`; returns their results in the same order."""
    raise NotImplementedError

  def check_shared_dir(self, path: str) -> None:
    """Fails unless every process that may run a run sees `path` as this one does."""
    del path  # Local processes share this machine's file system.

  def close(self) -> None:
    pass

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


@dataclasses.dataclass
class _Run:
  fn: Callable
  args: Sequence[Any]
  after: Sequence['_Run']
  name: str
  future: Optional[futures.Future] = None


class LocalExecutor(Executor):
  """`workers` spawned processes on this machine (1: each run in this process as it is
  submitted, its exceptions raised as in a plain loop)."""

  def __init__(self, workers: int = 1):
    if workers < 1:
      raise ValueError(f'workers must be at least 1, got {workers}')
    self._pool = None
    if workers > 1:
      ctx = multiprocessing.get_context('spawn')  # JAX is not fork-safe.
      self._pool = futures.ProcessPoolExecutor(workers, mp_context=ctx)
    self._waiting: List[_Run] = []
    self._running = set()

  def submit(self, fn, args=(), after=(), name=''):
    run = _Run(fn, tuple(args), tuple(after), name)
    if self._pool is None:  # Runs are submitted after the runs they wait for: run it now.
      run.future = futures.Future()
      run.future.set_result(fn(*run.args))
    else:
      self._waiting.append(run)
      self._start_ready()
    return run

  def _start_ready(self) -> None:
    for run in list(self._waiting):
      if all(a.future is not None and a.future.done() for a in run.after):
        self._waiting.remove(run)
        try:
          run.future = self._pool.submit(call, _module_name(run.fn), run.fn.__qualname__,
                                         run.args, run.name)
        except futures.BrokenExecutor as e:  # A worker died: the pool takes no more runs.
          run.future = futures.Future()
          run.future.set_exception(e)
        self._running.add(run.future)

  def gather(self, handles):
    while True:
      self._start_ready()
      if all(r.future is not None and r.future.done() for r in handles):
        return [_result(r.future) for r in handles]
      self._running = {f for f in self._running if not f.done()}
      if not self._running:
        raise RuntimeError('runs wait for runs that were never submitted to this executor')
      futures.wait(self._running, return_when=futures.FIRST_COMPLETED)

  def close(self):
    if self._pool is not None:
      self._pool.shutdown()


def _result(future: futures.Future) -> Any:
  try:
    return future.result()
  except Exception as e:  # pylint: disable=broad-except  # A dead worker process, say.
    return {'error': f'{type(e).__name__}: {e}'}


class RayExecutor(Executor):
  """Every run a Ray task; see the module docstring."""

  def __init__(self, address: str = '', workers: int = 1, cpus_per_run: float = 1.0,
               gpus_per_run: float = 0.0, max_retries: int = 3,
               init_options: Optional[Mapping[str, Any]] = None):
    import ray  # pylint: disable=g-import-not-at-top  # An extra: pip install gold-jax[ray].
    if cpus_per_run < 0 or gpus_per_run < 0:
      raise ValueError('cpus_per_run and gpus_per_run must not be negative')
    self._ray = ray
    self._started = not ray.is_initialized()
    if self._started:
      options = dict(include_dashboard=False, log_to_driver=True)
      if address:
        options['address'] = address
      else:
        options['num_cpus'] = max(1, int(round(workers * max(cpus_per_run, 1e-3))))
      options.update(init_options or {})
      ray.init(**options)
    self.cpus_per_run, self.gpus_per_run = cpus_per_run, gpus_per_run
    self.max_retries = max_retries
    self._remote = ray.remote(call)

  def submit(self, fn, args=(), after=(), name=''):
    options = task_options(fn, name, self.cpus_per_run, self.gpus_per_run, self.max_retries)
    ref = self._remote.options(**options).remote(
        _module_name(fn), fn.__qualname__, tuple(args), name, *after)
    return ref

  def gather(self, handles):
    results = {}
    pending = list(handles)
    while pending:
      done, pending = self._ray.wait(pending, num_returns=1)
      for ref in done:
        try:
          results[ref] = self._ray.get(ref)
        except self._ray.exceptions.RayError as e:  # The run raised, its worker died more
          cause = getattr(e, 'cause', None) or e    # than max_retries times, or a run it
          lines = str(cause).strip().splitlines()   # waited for did.
          results[ref] = {'error': f'{type(cause).__name__}: {lines[-1] if lines else ""}'}
    return [results[ref] for ref in handles]

  def check_shared_dir(self, path: str, timeout: float = 120.0) -> None:
    """Fails unless every alive node sees `path` (the sweep's directory) with this driver's
    files: a marker written here is read by one task pinned to each node."""
    from ray.util import scheduling_strategies  # pylint: disable=g-import-not-at-top
    path = os.path.abspath(path)
    token = uuid.uuid4().hex
    marker = os.path.join(path, f'.shared-{token}')
    with open(marker, 'w') as f:
      f.write(token)
    try:
      nodes = [n for n in self._ray.nodes() if n.get('Alive')]
      refs = [self._ray.remote(_read_marker).options(
          num_cpus=0, scheduling_strategy=scheduling_strategies.NodeAffinitySchedulingStrategy(
              n['NodeID'], soft=False)).remote(marker) for n in nodes]
      seen = self._ray.get(refs, timeout=timeout)
    finally:
      os.remove(marker)
    missing = [f'{n["NodeManagerAddress"]} ({n["NodeID"][:8]})'
               for n, content in zip(nodes, seen) if content != token]
    if missing:
      raise RuntimeError(
          f'the sweep directory {path} is not shared with every Ray node: '
          f'{", ".join(missing)} cannot read the files written here. Put --workdir on a '
          'file system every node mounts at the same path (NFS, Lustre, ...).')

  def close(self):
    if self._started and self._ray.is_initialized():
      self._ray.shutdown()


def task_options(fn: Callable, name: str, cpus_per_run: float, gpus_per_run: float,
                 max_retries: int) -> Dict[str, Any]:
  """The Ray task options of one run of `fn`: its resources, retries and environment
  (`run_env`, and `PYTHONPATH` that finds `fn`'s package)."""
  paths = [_code_root(fn)] + [p for p in os.environ.get('PYTHONPATH', '').split(':') if p]
  env = dict(run_env(gpus_per_run), PYTHONPATH=':'.join(dict.fromkeys(paths)))
  if CRASH_ENV in os.environ:
    env[CRASH_ENV] = os.environ[CRASH_ENV]
  return dict(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=max_retries,
              retry_exceptions=False, name=name or fn.__qualname__,
              runtime_env={'env_vars': env})


def _read_marker(path: str) -> str:
  try:
    with open(path) as f:
      return f.read()
  except OSError:
    return ''


@dataclasses.dataclass(frozen=True)
class ExecutorConfig:
  """Where a sweep's runs execute (the launchers' flags of the same names)."""
  executor: str = 'local'  # 'local' (a process pool) or 'ray' (Ray tasks).
  workers: int = 1  # Runs at once on this machine (local pool, or a local Ray's CPUs).
  ray_address: str = ''  # Ray cluster to join ('auto', 'head:6379'); '' = a local Ray.
  cpus_per_run: float = 1.0  # Ray: CPUs each run declares (fractions allowed).
  gpus_per_run: float = 0.0  # Ray: GPU share of each run, e.g. 0.25 (its memory too).
  max_retries: int = 3  # Ray: restarts of a run whose worker died (it resumes).


EXECUTOR_FIELDS = tuple(f.name for f in dataclasses.fields(ExecutorConfig))


def define_flags(flag_values, defaults=ExecutorConfig()) -> None:
  """absl flags `--executor`, `--ray_address`, `--cpus_per_run`, `--gpus_per_run`,
  `--max_retries` (`--workers` is the launcher's own)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  kw = {'flag_values': flag_values}
  flags.DEFINE_enum('executor', defaults.executor, EXECUTORS, 'Where runs execute: a local '
                    'process pool, or Ray tasks (pip install -e .[ray]).', **kw)
  flags.DEFINE_string('ray_address', defaults.ray_address, 'Ray cluster to join (auto, '
                      'head:6379); empty: a local Ray with workers x cpus_per_run CPUs.', **kw)
  flags.DEFINE_float('cpus_per_run', defaults.cpus_per_run, 'Ray: CPUs per run.', **kw)
  flags.DEFINE_float('gpus_per_run', defaults.gpus_per_run, 'Ray: GPUs per run (0.25: a '
                     'quarter of a GPU and of its memory).', **kw)
  flags.DEFINE_integer('max_retries', defaults.max_retries, 'Ray: retries of a run whose '
                       'worker died.', **kw)


def from_config(config) -> 'Executor':
  """The executor of a launcher config with the fields of `ExecutorConfig`."""
  return make_executor(**{f: getattr(config, f) for f in EXECUTOR_FIELDS})


def make_executor(executor: str = 'local', workers: int = 1, ray_address: str = '',
                  cpus_per_run: float = 1.0, gpus_per_run: float = 0.0, max_retries: int = 3,
                  init_options: Optional[Mapping[str, Any]] = None) -> Executor:
  """A `LocalExecutor` ('local') or `RayExecutor` ('ray') with these settings."""
  if executor == 'local':
    if ray_address or gpus_per_run:
      raise ValueError('--ray_address and --gpus_per_run need --executor=ray')
    return LocalExecutor(workers)
  if executor == 'ray':
    return RayExecutor(ray_address, workers, cpus_per_run, gpus_per_run, max_retries,
                       init_options)
  raise ValueError(f'unknown executor {executor!r}; expected one of {EXECUTORS}')
