"""`gold_jax.sweep`: dependency order of the local pool, the Ray task configuration, the crash
hook, and `--executor=ray` on a local two-CPU Ray: a `table1` smoke sweep with the local run
layout, a `table1` sweep in which one run's worker dies mid-run, the shared-directory check,
and the driving pipeline's guide and online run as Ray tasks."""

import csv
import json
import os
import subprocess
import time

import pytest

from gold_jax.studies import table1
from gold_jax import results, sweep


def test_local_pool_starts_a_run_after_the_runs_it_waits_for(tmp_path):
  # `slow` waits (up to 5 min) for a folder that only `free` makes, so it can only return 0
  # if `free` ran beside it, on the second worker; `after` must start once `slow` is done.
  # Handshakes, not clocks: the test holds on a loaded machine.
  marker, done = str(tmp_path / 'free_ran'), str(tmp_path / 'slow_done')
  wait = f'for i in $(seq 3000); do [ -d {marker} ] && mkdir {done} && exit 0; sleep 0.1; done; exit 1'
  with sweep.LocalExecutor(workers=2) as executor:
    slow = executor.submit(subprocess.call, (['sh', '-c', wait],), name='slow')
    after = executor.submit(os.path.isdir, (done,), after=[slow])
    free = executor.submit(os.mkdir, (marker,))
    slow_rc, after_saw_slow_done, _ = executor.gather([slow, after, free])
  assert slow_rc == 0  # `free` ran while `slow` was still waiting.
  assert after_saw_slow_done  # `after` started only once `slow` had finished.
  inline = sweep.LocalExecutor(workers=1)
  assert inline.gather([inline.submit(os.getpid)]) == [os.getpid()]  # One worker: here.


def test_run_resources_and_environment():
  assert sweep.run_env(0) == {'JAX_PLATFORMS': 'cpu'}
  quarter = sweep.run_env(0.25)  # A quarter of a GPU: on demand, at most ~its share.
  assert quarter == {'XLA_PYTHON_CLIENT_PREALLOCATE': 'false',
                     'XLA_PYTHON_CLIENT_MEM_FRACTION': '0.2375'}
  assert sweep.run_env(2)['XLA_PYTHON_CLIENT_MEM_FRACTION'] == '0.95'
  options = sweep.task_options(table1._job, 'Car-Circle/seed0/dt', 2, 0.25, 5)
  assert (options['num_cpus'], options['num_gpus'], options['max_retries']) == (2, 0.25, 5)
  assert options['name'] == 'Car-Circle/seed0/dt' and not options['retry_exceptions']
  env = options['runtime_env']['env_vars']
  assert env['XLA_PYTHON_CLIENT_MEM_FRACTION'] == '0.2375'
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(table1.__file__))))
  assert env['PYTHONPATH'].split(':')[0] == repo  # Where `gold_jax` is imported from.
  with pytest.raises(ValueError, match='need --executor=ray'):
    sweep.make_executor('local', gpus_per_run=0.5)
  with pytest.raises(ValueError, match='unknown executor'):
    sweep.make_executor('slurm')


def test_crash_hook_fires_once_and_only_for_its_run(tmp_path, monkeypatch):
  marker = tmp_path / 'died'
  monkeypatch.setenv(sweep.CRASH_ENV, f'a/b|0|{marker}')
  assert sweep._crash_timer('other') is None
  marker.write_text('')
  assert sweep._crash_timer('a/b') is None  # Already died once.
  marker.unlink()
  monkeypatch.setenv(sweep.CRASH_ENV, f'a/b|60|{marker}')
  disarm = sweep._crash_timer('a/b')
  disarm.set()  # The run finished in time: the worker lives on.
  time.sleep(0.1)
  assert not marker.exists()


# -- On Ray ---------------------------------------------------------------------------------------

SMOKE = dict(tasks=('Car-Circle',), seeds=1, scale='smoke', executor='ray', workers=2)


@pytest.fixture(scope='module')
def local_ray():
  """A local Ray with two CPUs (two runs at once), shared by the tests below."""
  ray = pytest.importorskip('ray')
  ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
           object_store_memory=100 * 1024 ** 2)
  yield
  ray.shutdown()


def _rows(workdir):
  with open(os.path.join(workdir, 'runs.csv')) as f:
    return list(csv.DictReader(f))


def test_ray_smoke_sweep(local_ray, tmp_path):
  del local_ray
  methods = ('BC', 'IQL', 'GOLD(BC-IQL)')
  config = table1.Config(methods=methods, **SMOKE)
  out = table1.run(config, str(tmp_path))
  assert not out['failed']
  rows = _rows(tmp_path)
  assert sorted(r['method'] for r in rows) == sorted((results.EXPERT,) + methods)
  base = tmp_path / 'Car-Circle' / 'seed0'
  assert sorted(os.listdir(base)) == ['bc', 'expert', 'gold_bc-iql', 'iql']  # Local layout.
  assert all((base / stage / 'result.json').exists() for stage in os.listdir(base))
  assert 'on Ray' in (tmp_path / 'timing.md').read_text()
  md = (tmp_path / 'table1.md').read_text()
  assert all(m in md for m in methods)
  # The guided run started after its guide finished; the guide after the expert.
  done = {s: table1._done(str(base / s)) for s in os.listdir(base)}
  assert done['bc']['started'] >= done['expert']['started'] + done['expert']['seconds']
  assert done['gold_bc-iql']['started'] >= done['bc']['started'] + done['bc']['seconds']
  # A rerun submits nothing: every result is found on disk.
  mtime = os.path.getmtime(base / 'iql' / 'result.json')
  assert not table1.run(config, str(tmp_path))['failed']
  assert os.path.getmtime(base / 'iql' / 'result.json') == mtime


def test_ray_sweep_survives_a_dead_worker(local_ray, tmp_path, monkeypatch):
  del local_ray
  marker = tmp_path / 'died_once'
  victim = 'Car-Circle/seed0/expert'  # The DT guide waits for its retry.
  # Killed 1 s into the run: before it can finish (building its env and compiling SAC take
  # longer), however fast the machine.
  monkeypatch.setenv(sweep.CRASH_ENV, f'{victim}|1|{marker}')
  config = table1.Config(methods=('DT',), **SMOKE)
  workdir = tmp_path / 'sweep'
  out = table1.run(config, str(workdir))
  assert marker.exists(), 'the worker was never killed'
  assert not out['failed']
  rows = _rows(workdir)
  assert sorted(r['method'] for r in rows) == sorted([results.EXPERT, 'DT']), rows  # Once each.
  for stage in ('expert', 'dt'):
    run_dir = workdir / 'Car-Circle' / 'seed0' / stage
    assert (run_dir / 'result.json').exists() and not (run_dir / 'error.txt').exists()
  expert, dt = (table1._done(str(workdir / 'Car-Circle' / 'seed0' / s)) for s in ('expert', 'dt'))
  assert dt['started'] >= expert['started'] + expert['seconds']


def test_ray_sweep_needs_a_shared_workdir(local_ray, tmp_path, monkeypatch):
  del local_ray
  executor = sweep.RayExecutor(workers=2)
  executor.check_shared_dir(str(tmp_path))  # One node: the same file system.
  assert not os.listdir(tmp_path)  # The marker is removed.
  monkeypatch.setattr(sweep, '_read_marker', lambda path: '')  # A node that sees nothing.
  with pytest.raises(RuntimeError, match='not shared with every Ray node'):
    executor.check_shared_dir(str(tmp_path))


def test_ray_driving_sweep(local_ray, tmp_path):
  del local_ray
  pytest.importorskip('metadrive')
  from gold_jax.studies import driving  # pylint: disable=g-import-not-at-top
  from gold_jax.envs import scenarionet_writer  # pylint: disable=g-import-not-at-top
  data = tmp_path / 'scenarios'
  scenarionet_writer.write_procedural_scenarios(data, num_scenarios=4, seed=0, horizon=40)
  config = driving.Config(data_dir=str(data), scale='smoke', test_fraction=0.25,
                          methods=('BC', 'GOLD(BC-IQL)'), plot_methods=('BC',),
                          executor='ray', workers=2)
  workdir = tmp_path / 'driving'
  out = driving.run(config, str(workdir))
  assert [r['method'] for r in out['rows']] == list(config.methods)
  assert (workdir / 'guides' / 'bc' / 'summary.json').exists()
  done = json.loads((workdir / 'online' / 'gold_bc_iql' / 'done.json').read_text())
  assert done['training/env_steps'] > 0
  assert not (workdir / 'guides' / 'dt').exists()  # Only what the methods need.
