"""gold_jax.launch and gold_jax.files: atomic writes, run configs, launchers' readable errors."""

import ast
import dataclasses
import glob
import importlib
import os
import pathlib
import subprocess
import sys
import textwrap
from typing import Any, Dict, Literal, Mapping, Optional, Sequence, Tuple

from absl import app
from absl import flags
import jax
import numpy as np
import pytest

from gold_jax import configs, errors
from gold_jax import files
from gold_jax import launch
from gold_jax.agents import iql, lagrange
from gold_jax.loop import LoopConfig
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
    assert not imported, (name, imported)  # Stages and studies live in the library.


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


# -- Flags generated from a config -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Actor:
  kind: Literal['awr', 'sac'] = 'awr'  # AWR (IQL paper) or SAC actor.
  deterministic: Optional[bool] = None  # Mean actions; None: the kind's
                                        # own choice.
  temperature: float = 3.0


@dataclasses.dataclass(frozen=True)
class _Run:
  task: str = 'Car-Circle'  # Task name.
  steps: int = 10  # Env steps
  # A comment line at field depth belongs to no field.
  utd: float = 1.0  # Updates per env step.
  progress: bool = True  # Progress bars.
  fractions: Tuple[float, ...] = (0.5, 0.25)  # Guide horizons as fractions
                                              # of the episode length.
  names: Tuple[str, ...] = ('a', 'b')
  horizons: Optional[Sequence[int]] = None  # Horizons in env steps.
  limit: Optional[int] = None  # Episode length; None: the task's.
  scale: Optional[float] = 2.5  # Reward scale.
  label: Optional[str] = None  # Run label.
  options: Dict[str, Any] = dataclasses.field(default_factory=lambda: {'seed': 1})  # Env
                                                                                  # options.
  extra: Optional[Mapping[str, Any]] = None  # Extra options.
  actor: _Actor = dataclasses.field(default_factory=lambda: _Actor(temperature=1.0))
  learner: iql.Config = iql.Config(hidden_dims=(4,))  # The student.


def _generated(config_cls, argv=(), **kwargs) -> flags.FlagValues:
  fv = flags.FlagValues()
  launch.define_config_flags(config_cls, fv, **kwargs)
  fv(['prog', *argv])
  return fv


def test_generated_flags_round_trip_every_type():
  fv = _generated(_Run)
  assert launch.config_from_flags(_Run, fv) == _Run()
  assert fv['learner.hidden_dims'].value == ['4'] and fv['actor.temperature'].value == 1.0
  fv = _generated(_Run, [
      '--task=Point-Goal', '--steps=7', '--utd=0.5', '--noprogress', '--fractions=0.75,0.5,0',
      '--names=x,y z', '--horizons=100,50', '--limit=20', '--scale=none', '--label=first',
      '--options={"data_dir": "/d", "range": [0, 5]}', '--extra={}', '--actor.kind=sac',
      '--actor.deterministic=true', '--learner.expectile=0.9', '--learner.hidden_dims=32,32',
      '--learner.actor_lr_decay_steps=1000', '--learner.multiplier.error_clip=None',
      '--learner.multiplier.rule=pid'])
  assert launch.config_from_flags(_Run, fv) == _Run(
      task='Point-Goal', steps=7, utd=0.5, progress=False, fractions=(0.75, 0.5, 0.0),
      names=('x', 'y z'), horizons=(100, 50), limit=20, scale=None, label='first',
      options={'data_dir': '/d', 'range': [0, 5]}, extra={},
      actor=_Actor(kind='sac', deterministic=True, temperature=1.0),
      learner=iql.Config(hidden_dims=(32, 32), expectile=0.9, actor_lr_decay_steps=1000,
                         multiplier=lagrange.Config(rule='pid', value=1.0, error_clip=None)))
  fv = _generated(_Run, ['--horizons=none', '--limit=NONE', '--label=none', '--extra=null',
                         '--noactor.deterministic', '--options={}'])
  assert launch.config_from_flags(_Run, fv) == _Run(options={}, actor=_Actor(
      deterministic=False, temperature=1.0))


def test_generated_flags_of_a_prefix_and_skipped_fields():
  fv = flags.FlagValues()
  flags.DEFINE_enum('learner.actor_loss', 'sac', ['awr', 'sac'], 'By hand.', flag_values=fv)
  names = launch.define_config_flags(iql.Config, fv, prefix='learner.',
                                     skip=('actor_loss', 'learner.tau'))
  assert 'learner.expectile' in names and not {'learner.actor_loss', 'learner.tau'} & set(names)
  fv(['prog', '--learner.expectile=0.8', '--learner.actor_loss=awr', '--learner.num_qs=4'])
  assert launch.config_from_flags(iql.Config, fv, prefix='learner.') == iql.Config(
      expectile=0.8, actor_loss='awr', num_qs=4)
  # A whole nested config skipped: no flags, and its default stays.
  fv = _generated(_Run, ['--steps=3'], skip=('learner', 'actor.kind'))
  assert not any(name.startswith('learner.') for name in fv) and 'actor.kind' not in fv
  assert launch.config_from_flags(_Run, fv) == _Run(steps=3)


def test_generated_flags_round_trip_the_collect_config(monkeypatch):
  monkeypatch.syspath_prepend(ROOT)  # Imported here: importing a launcher defines no flag.
  config_cls = importlib.import_module('experiments.collect').Config
  fv = _generated(config_cls)
  nested = {'loop': LoopConfig, 'multiplier': lagrange.Config}
  assert set(fv) == {f.name for f in dataclasses.fields(config_cls) if f.name not in nested} | {
      f'{name}.{f.name}' for name, cls in nested.items() for f in dataclasses.fields(cls)}
  assert launch.config_from_flags(config_cls, fv) == config_cls()
  fv = _generated(config_cls, ['--hidden_dims=32,32', '--cost_limit=12.5', '--notensorboard',
                               '--max_episode_steps=50', '--env_options={"start_seed": 3}',
                               '--eval_env_options={"start_seed": 100, "num_scenarios": 2}',
                               '--multiplier.rule=fixed', '--loop.utd=0.25'])
  assert launch.config_from_flags(config_cls, fv) == configs.replace(
      config_cls(), hidden_dims=(32, 32), cost_limit=12.5, tensorboard=False,
      max_episode_steps=50, env_options={'start_seed': 3}, multiplier={'rule': 'fixed'},
      loop={'utd': 0.25}, eval_env_options={'start_seed': 100, 'num_scenarios': 2})
  # Nested fields keep the stage's defaults (collect: PID gains of its own) and their help.
  assert fv['multiplier.kp'].default == 0.1 and fv['loop.learning_starts'].default == 5_000
  assert fv['multiplier.rule'].help.startswith("'fixed' (λ = value), or adapted on measured")
  assert fv['env_options'].help == ("Extra `envs.make` options (e.g. MetaDrive's data_dir and "
                                    "scenario range); None: none.")
  assert fv['cost_limit'].default is None and fv['hidden_dims'].default == ['256', '256']


def test_generated_help_comes_from_the_field_comments():
  fv = _generated(_Run, help_overrides={'utd': 'Replay ratio.', 'learner.tau': 'Polyak.'})
  assert fv['task'].help == 'Task name.'
  assert fv['steps'].help == 'Env steps'  # The comment line below is at field depth.
  assert fv['fractions'].help == 'Guide horizons as fractions of the episode length.'
  assert fv['options'].help == 'Env options.'
  assert fv['actor.deterministic'].help == "Mean actions; None: the kind's own choice."
  assert fv['learner.expectile'].help == (
      'τ of the value regression; None -> 0.7 (awr) / 0.8 (sac).')
  assert fv['names'].help == 'names' and fv['actor.temperature'].help == 'temperature'
  assert fv['utd'].help == 'Replay ratio.' and fv['learner.tau'].help == 'Polyak.'
  assert launch.field_comments(_Actor) == {
      'kind': 'AWR (IQL paper) or SAC actor.',
      'deterministic': "Mean actions; None: the kind's own choice."}


def test_generated_flags_refuse_bad_values():
  with pytest.raises(errors.ConfigError, match='--options is not valid JSON') as caught:
    launch.config_from_flags(_Run, _generated(_Run, ['--options={bad']))
  assert '--options=' in caught.value.hint
  with pytest.raises(errors.ConfigError, match='--extra must be a JSON object'):
    launch.config_from_flags(_Run, _generated(_Run, ['--extra=[1, 2]']))
  with pytest.raises(errors.ConfigError, match='--fractions must be numbers'):
    launch.config_from_flags(_Run, _generated(_Run, ['--fractions=0.5,x']))
  with pytest.raises(errors.ConfigError, match='--learner.hidden_dims must be integers'):
    launch.config_from_flags(_Run, _generated(_Run, ['--learner.hidden_dims=4.5']))
  with pytest.raises(flags.IllegalFlagValueError, match='--limit=abc'):
    _generated(_Run, ['--limit=abc'])
  with pytest.raises(flags.IllegalFlagValueError, match='--actor.kind=ppo'):
    _generated(_Run, ['--actor.kind=ppo'])


def test_generated_flags_refuse_a_taken_name_unless_skipped():
  fv = flags.FlagValues()
  flags.DEFINE_string('task', 'Point-Goal', 'By hand.', flag_values=fv)
  flags.DEFINE_integer('learner.num_qs', 4, 'By hand.', flag_values=fv)
  with pytest.raises(flags.DuplicateFlagError, match=r'--task, --learner.num_qs already') as e:
    launch.define_config_flags(_Run, fv)
  assert "skip=('task', 'learner.num_qs')" in str(e.value)
  assert set(fv) == {'task', 'learner.num_qs'}  # Nothing defined on a refusal.
  launch.define_config_flags(_Run, fv, skip=('task', 'learner.num_qs'))
  fv(['prog', '--steps=2'])
  assert launch.config_from_flags(_Run, fv) == _Run(
      task='Point-Goal', steps=2, learner=iql.Config(hidden_dims=(4,), num_qs=4))

  @dataclasses.dataclass
  class Odd:
    pair: Tuple[int, str] = (1, 'a')

  with pytest.raises(TypeError, match=r"Odd.pair: no flag type .* skip=\('pair',\)"):
    launch.define_config_flags(Odd, flags.FlagValues())
