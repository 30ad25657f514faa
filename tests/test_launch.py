"""gold_jax.launch and gold_jax.files: atomic writes, run configs, launchers' readable errors."""

import ast
import dataclasses
import glob
import os
import pathlib
import subprocess
import sys
import textwrap
from typing import Tuple

from absl import app
from absl import flags
import jax
import numpy as np
import pytest

from gold_jax import errors
from gold_jax import files
from gold_jax import launch
from gold_jax.agents import iql
from gold_jax.checkpoints import CheckpointManager
from launcher_checks import ROOT, parsed_flags, run_launcher


@dataclasses.dataclass(frozen=True)
class Config:
  task: str = 'Car-Circle'
  hidden_dims: Tuple[int, ...] = (8, 8)
  episodes: int = 5


def _names(directory) -> list:
  return sorted(os.listdir(directory))


# -- Atomic writes -----------------------------------------------------------------------------


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
  path = tmp_path / 'sub' / 'summary.json'
  files.write_json(path, {'reward': 1.0})
  with pytest.raises(TypeError):
    files.write_json(path, {'reward': object()})  # Fails half way through the dump.
  assert files.read_json(path) == {'reward': 1.0}
  assert _names(path.parent) == ['summary.json']
  with pytest.raises(RuntimeError):
    with files.atomic_open(tmp_path / 'new.npz', 'wb') as f:
      np.savez(f, x=np.zeros(3))
      raise RuntimeError('writer died')
  assert _names(tmp_path) == ['sub']  # Neither the target nor a temporary file.


def test_atomic_path_keeps_the_suffix_for_format_by_name_writers(tmp_path):
  with files.atomic_path(tmp_path / 'table.csv') as tmp:
    assert tmp.endswith('.csv') and os.path.dirname(tmp) == str(tmp_path)
    pathlib.Path(tmp).write_text('a,b\n')
  files.write_text(tmp_path / 'notes.md', 'text')
  assert (tmp_path / 'table.csv').read_text() == 'a,b\n'
  assert _names(tmp_path) == ['notes.md', 'table.csv']
  assert files.read_json(tmp_path / 'missing.json') is None


# -- Run configs and flags -------------------------------------------------------------------


def test_check_same_config_refuses_another_run(tmp_path):
  workdir = str(tmp_path)
  launch.check_same_config(workdir, Config())
  assert files.read_json(tmp_path / 'config.json') == {'task': 'Car-Circle',
                                                       'hidden_dims': [8, 8], 'episodes': 5}
  launch.check_same_config(workdir, Config())  # Resuming the same run.
  launch.check_same_config(workdir, Config(episodes=9), may_differ=('episodes',))
  assert files.read_json(tmp_path / 'config.json')['episodes'] == 9
  with pytest.raises(errors.ConfigError, match=r"hidden_dims: \[8, 8\] -> \[16\]") as caught:
    launch.check_same_config(workdir, Config(hidden_dims=(16,)))
  assert '--workdir' in caught.value.hint
  assert isinstance(caught.value, ValueError)


def test_config_from_flags_and_make_main(tmp_path):
  calls = []

  def define():
    flags.DEFINE_string('task', 'Car-Circle', 'Task.')
    flags.DEFINE_list('hidden_dims', ['8', '8'], 'Widths.')
    flags.DEFINE_string('workdir', None, 'Run directory.')

  def parse(values):
    config = launch.config_from_flags(Config, values)
    if config.task == 'bad':
      raise ValueError('--task must not be bad')
    return config

  main = launch.make_main(parse, lambda config, workdir: calls.append((config, workdir)) or 7)
  with parsed_flags(define, ['prog', '--hidden_dims=4,2', f'--workdir={tmp_path}']):
    assert main(['prog']) is None  # absl would exit with a returned value.
  assert calls == [(Config(hidden_dims=(4, 2)), str(tmp_path))]
  with parsed_flags(define, ['prog', '--task=bad', f'--workdir={tmp_path}']):
    with pytest.raises(errors.ConfigError, match='must not be bad'):
      main(['prog'])
  with parsed_flags(define, ['prog', '--hidden_dims=4,x', f'--workdir={tmp_path}']):
    with pytest.raises(errors.ConfigError, match='--hidden_dims must be integers'):
      main(['prog'])
  with parsed_flags(define, ['prog']):
    with pytest.raises(app.UsageError, match='--workdir is required'):
      main(['prog'])
    with pytest.raises(app.UsageError, match='unexpected arguments: extra'):
      main(['prog', 'extra'])


# -- Launchers as modules -----------------------------------------------------------------------

LAUNCHERS = sorted(pathlib.Path(p).stem for p in glob.glob(os.path.join(ROOT, 'experiments',
                                                                        '[a-z]*.py')))
# Pipelines that run other stages in-process; every other launcher stands alone.
STAGES = {'table1': {'collect', 'train_guide', 'distill', 'evaluate'},
          'demo': {'collect', 'train_guide', 'distill', 'evaluate'},
          'driving': {'train_guide', 'distill'}}


def test_importing_every_launcher_defines_no_flag():
  code = textwrap.dedent(f"""
      from absl import flags
      import importlib
      for name in {LAUNCHERS!r}:
        importlib.import_module('experiments.' + name)
      ours = [module for module in flags.FLAGS.flags_by_module_dict()
              if module.split('.')[0] in ('experiments', 'gold_jax', '__main__')]
      assert not ours, ours  # Only libraries (absl, chex, orbax) define flags on import.
      print('imported', len({LAUNCHERS!r}))
  """)
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS='cpu'), timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'imported {len(LAUNCHERS)}' in result.stdout


def test_launchers_import_only_the_library():
  for name in LAUNCHERS:
    tree = ast.parse(pathlib.Path(ROOT, 'experiments', f'{name}.py').read_text())
    imported = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module == 'experiments':
        imported |= {alias.name for alias in node.names}
      elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('experiments.'):
        imported.add(node.module.split('.')[1])
      elif isinstance(node, ast.Import):
        imported |= {a.name.split('.')[1] for a in node.names
                     if a.name.startswith('experiments.')}
    assert imported <= STAGES.get(name, set()), (name, imported)


# -- Readable errors ----------------------------------------------------------------------------


def _assert_readable(result, *words):
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2, result.stderr[-3000:]
  assert len(lines) <= 3 and lines[-2].startswith('error: '), result.stderr[-3000:]
  assert lines[-1].startswith('hint: ')
  for word in words:
    assert word in result.stderr


@pytest.fixture(scope='module')
def corrupt_checkpoint(tmp_path_factory):
  run_dir = tmp_path_factory.mktemp('corrupt')
  state = jax.jit(iql.init, static_argnums=(1, 2, 3))(jax.random.PRNGKey(0), 8, 2,
                                                       iql.Config(hidden_dims=(8, 8)))
  with CheckpointManager(run_dir / 'checkpoints') as manager:
    manager.save(5, state, extra={'task': 'Car-Circle'})
  for name in glob.glob(str(run_dir / 'checkpoints' / '5' / 'state' / '**' / 'd' / '*'),
                        recursive=True):
    with open(name, 'r+b') as f:
      f.truncate(os.path.getsize(name) // 2)
  return run_dir


def test_bad_dataset_and_checkpoint_end_in_two_lines(tmp_path, corrupt_checkpoint):
  dataset = tmp_path / 'demos.hdf5'
  dataset.write_bytes(b'not an hdf5 file')
  result = run_launcher('experiments.train_guide', f'--dataset={dataset}',
                        f'--workdir={tmp_path / "dt"}')
  _assert_readable(result, f'{dataset}: unreadable', 'DSRL')
  result = run_launcher('experiments.evaluate', f'--ckpt={corrupt_checkpoint}',
                        f'--out_dir={tmp_path / "out"}')
  _assert_readable(result, str(corrupt_checkpoint / 'checkpoints' / '5'), 'corrupt or truncated')


@pytest.mark.parametrize('argv, words', [
    (['--episodes=abc'], ['--episodes=abc', 'invalid literal']),
    (['--nope=1'], ["Unknown command line flag 'nope'"]),
    (['--noise_fraction=2'], ['--noise_fraction must be in [0, 1]']),
    (['--task=Nope'], ["unknown task 'Nope'", '--task=Car-Circle']),
])
def test_bad_flags_and_tasks_end_in_two_lines(tmp_path, argv, words):
  result = run_launcher('experiments.collect', f'--workdir={tmp_path}', '--progress=false',
                        *argv)
  _assert_readable(result, *words)
  assert 'USAGE' not in result.stdout + result.stderr  # No help text.


def test_verbose_adds_the_traceback(tmp_path):
  result = run_launcher('experiments.train_guide', f'--dataset={tmp_path / "none.npz"}',
                        f'--workdir={tmp_path / "dt"}', '--verbose')
  assert result.returncode == 2 and 'Traceback (most recent call last)' in result.stderr
  assert 'MissingDatasetError' in result.stderr
  error = result.stderr.strip().splitlines()[-2]
  assert error == f'error: {tmp_path / "none.npz"}: no such dataset file'
  env = dict(os.environ, GOLD_JAX_VERBOSE='1')
  result = subprocess.run([sys.executable, '-m', 'experiments.collect', '--task=Nope',
                           f'--workdir={tmp_path / "c"}'], capture_output=True, text=True,
                          cwd=ROOT, env=dict(env, JAX_PLATFORMS='cpu'), timeout=300)
  assert result.returncode == 2 and 'Traceback' in result.stderr and 'TaskError' in result.stderr
