"""MetaDrive envs, offline assets, ScenarioNet directory checks and the scenario writer."""

import contextlib
import logging
import os
import pathlib
import pickle

import numpy as np
import pytest

pytest.importorskip('metadrive')

from gold_jax import errors  # pylint: disable=wrong-import-position
from gold_jax.envs import metadrive as md  # pylint: disable=wrong-import-position
from gold_jax.envs import metadrive_assets  # pylint: disable=wrong-import-position
from gold_jax.envs import scenarionet_writer  # pylint: disable=wrong-import-position


def real_data_dir():
  """The real Waymo scenarios: $GOLD_WOMD_DIR, else `<repo>/../shared/data/womd`."""
  repo = pathlib.Path(__file__).resolve().parents[1]
  path = pathlib.Path(os.environ.get(md.DATA_DIR_ENV) or repo / '..' / 'shared' / 'data' / 'womd')
  return path if (path / md.SUMMARY_FILE).is_file() else None


@contextlib.contextmanager
def opened(kind, **options):
  env = md.make_metadrive(kind, **options)
  try:
    yield env
  finally:
    env.close()  # MetaDrive allows one simulator per process.


@pytest.fixture(scope='module')
def procedural_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp('procedural')
  scenarionet_writer.write_procedural_scenarios(out, num_scenarios=2, seed=0, horizon=60)
  return out


def test_minimal_assets_are_created_only_when_absent(tmp_path):
  target = tmp_path / 'assets'
  assert metadrive_assets.status(target) == 'absent'
  metadrive_assets.write_minimal_assets(target)
  assert metadrive_assets.status(target) == 'minimal'
  assert (target / 'version.txt').read_text().strip() == metadrive_assets.package_version()
  from PIL import Image
  with Image.open(target.joinpath(*metadrive_assets.GRASS_TEXTURE)) as image:
    assert image.format == 'JPEG'
  # A real asset folder (no marker) is reported as real and never written to.
  real = tmp_path / 'real'
  real.joinpath(*metadrive_assets.GRASS_TEXTURE).parent.mkdir(parents=True)
  real.joinpath(*metadrive_assets.GRASS_TEXTURE).write_bytes(b'real texture')
  (real / 'version.txt').write_text(metadrive_assets.package_version())
  metadrive_assets.write_minimal_assets(real)
  assert metadrive_assets.status(real) == 'real'
  assert real.joinpath(*metadrive_assets.GRASS_TEXTURE).read_bytes() == b'real texture'
  assert not (real / metadrive_assets.MINIMAL_MARKER).exists()
  (real / 'version.txt').write_text('0.0.1')
  assert metadrive_assets.status(real) == 'outdated'


def test_ensure_assets_warns_how_to_get_real_assets(tmp_path, monkeypatch, caplog):
  monkeypatch.setattr(metadrive_assets, 'asset_dir', lambda: tmp_path / 'assets')
  monkeypatch.setattr(metadrive_assets, '_warned', False)
  with caplog.at_level(logging.WARNING):
    assert metadrive_assets.ensure_assets() == 'minimal'
  assert 'rendering' in caplog.text and 'python -m metadrive.pull_asset' in caplog.text
  assert metadrive_assets.status(tmp_path / 'assets') == 'minimal'


def test_safe_env_resets_and_steps():
  with opened('safe', seed=0, num_scenarios=1, horizon=50) as env:
    assert env.action_space.shape == (2,)
    np.testing.assert_array_equal(env.action_space.low, -1.0)
    np.testing.assert_array_equal(env.action_space.high, 1.0)
    obs, _ = env.reset()
    assert obs.shape == env.observation_space.shape and obs.dtype == np.float32
    for _ in range(5):
      obs, reward, terminated, truncated, info = env.step(np.array([0.0, 0.5], np.float32))
    assert np.isfinite(obs).all() and np.isfinite(reward)
    assert info['cost'] >= 0 and 'arrive_dest' in info and 'out_of_road' in info
  assert metadrive_assets.status() in ('minimal', 'real')


def test_second_env_in_one_process_names_the_fix():
  with opened('safe', seed=0, num_scenarios=1, horizon=20) as env:
    env.reset()
    with pytest.raises(errors.EnvError, match='already open in this process') as caught:
      md.make_metadrive('safe', num_scenarios=1)
    assert 'asynchronous=True' in caught.value.hint and 'close()' in caught.value.hint
  with opened('safe', seed=0, num_scenarios=1, horizon=20) as env:  # After close(): fine.
    env.reset()


def test_waymo_env_on_written_scenarios(procedural_dir):
  with opened('waymo', data_dir=procedural_dir, seed=3) as env:
    assert env.action_space.shape == (2,)
    env.reset(seed=7)
    first = env.unwrapped.current_seed
    env.reset(seed=7)
    assert env.unwrapped.current_seed == first  # Scenario choice follows the reset seed.
    for index in range(2):
      obs, _ = env.reset(options={'scenario_index': index})
      assert obs.shape == env.observation_space.shape
      tracks = env.unwrapped.engine.data_manager.current_scenario['tracks']
      assert len(tracks) > 1  # The ego plus recorded traffic.
      for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
      assert np.isfinite(obs).all() and 'cost' in info and 'arrive_dest' in info
    # Standing still, the episode is truncated 10 steps after the log ends.
    env.reset(options={'scenario_index': 0})
    length = env.unwrapped.engine.data_manager.current_scenario['length']
    for step in range(1, length + 20):
      _, _, terminated, truncated, info = env.step(np.array([0.0, -1.0], np.float32))
      if terminated or truncated:
        break
    assert truncated and not terminated and step == length + 10, (step, length, info)


def test_waymo_env_reads_data_dir_from_environment(procedural_dir, monkeypatch):
  monkeypatch.setenv(md.DATA_DIR_ENV, str(procedural_dir))
  with opened('waymo', start_scenario_index=1) as env:
    assert env.unwrapped.config['data_directory'] == str(procedural_dir)
    assert env.unwrapped.config['num_scenarios'] == 1
    obs, _ = env.reset()
    assert env.unwrapped.current_seed == 1


def test_replay_over_many_scenarios_does_not_cache_them(procedural_dir, monkeypatch):
  def cached(**options):
    with opened('waymo', data_dir=procedural_dir, **options) as env:
      env.reset(options={'scenario_index': 0})
      env.reset(options={'scenario_index': 1})
      config, engine = env.unwrapped.config, env.unwrapped.engine
      stored = sum(m is not None for m in engine.map_manager._stored_maps.values())  # pylint: disable=protected-access
      return config['store_data'], config['store_map'], stored

  assert cached() == (True, True, 2)  # 2 scenarios: MetaDrive's own caching.
  monkeypatch.setattr(md, 'CACHE_SCENARIOS', 1)
  assert cached() == (False, False, 0)  # More than CACHE_SCENARIOS: one scenario at a time.
  assert cached(store_map=True) == (False, True, 2)  # The options choose.


def test_writer_output_is_scenarionet(procedural_dir):
  paths = md.scenario_files(procedural_dir)
  assert len(paths) == 2 and all(p.name.startswith('sd_') for p in paths)
  for path in paths:
    scenario = md.read_scenario(path)
    assert set(md.SCENARIO_KEYS) <= set(scenario)
    sdc = scenario['metadata']['sdc_id']
    assert np.asarray(scenario['tracks'][sdc]['state']['valid']).all()
    assert scenario['length'] <= 62
  assert not list(procedural_dir.glob('.*'))  # No temporary files left behind.
  with pytest.raises(ValueError, match='overwrite'):
    scenarionet_writer.write_procedural_scenarios(procedural_dir, num_scenarios=1)


def _write(path, obj):
  with open(path, 'wb') as f:
    pickle.dump(obj, f)


def test_bad_scenario_dirs_name_path_and_layout(tmp_path, monkeypatch):
  missing = tmp_path / 'missing'
  with pytest.raises(ValueError, match=f'{missing}.*dataset_summary.pkl'):
    md.make_metadrive('waymo', data_dir=missing)
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(ValueError, match=f'{empty}.*dataset_summary.pkl'):
    md.make_metadrive('waymo', data_dir=empty)
  unlisted = tmp_path / 'unlisted'
  unlisted.mkdir()
  _write(unlisted / md.SUMMARY_FILE, {'sd_a.pkl': {}})
  with pytest.raises(ValueError, match='sd_a.pkl.*does not exist'):
    md.make_metadrive('waymo', data_dir=unlisted)
  not_scenario = tmp_path / 'not_scenario'
  not_scenario.mkdir()
  _write(not_scenario / md.SUMMARY_FILE, {'sd_a.pkl': {}})
  _write(not_scenario / 'sd_a.pkl', {'id': 'a', 'tracks': {}})
  with pytest.raises(ValueError, match=f'{not_scenario / "sd_a.pkl"}.*lacks keys.*version'):
    md.make_metadrive('waymo', data_dir=not_scenario)
  garbage = tmp_path / 'garbage'
  garbage.mkdir()
  (garbage / md.SUMMARY_FILE).write_text('not a pickle')
  with pytest.raises(ValueError, match=f'{garbage}.*expected a ScenarioNet directory'):
    md.make_metadrive('waymo', data_dir=garbage)
  monkeypatch.delenv(md.DATA_DIR_ENV, raising=False)
  with pytest.raises(ValueError, match=md.DATA_DIR_ENV):
    md.make_metadrive('waymo')
  with pytest.raises(ValueError, match='unknown MetaDrive kind'):
    md.make_metadrive('carla')


def test_scenario_selection_out_of_range(procedural_dir):
  with pytest.raises(ValueError, match='holds 2 scenarios'):
    md.check_scenario_dir(procedural_dir, start=1, num=2)


def test_unknown_version_is_rejected(tmp_path, procedural_dir):
  scenario = md.read_scenario(md.scenario_files(procedural_dir)[0])
  scenario['version'] = None
  _write(tmp_path / 'sd_bad.pkl', scenario)
  with pytest.raises(ValueError, match='unknown format version'):
    md.read_scenario(tmp_path / 'sd_bad.pkl')


def test_real_waymo_scenarios_replay():
  data_dir = real_data_dir()
  if data_dir is None:
    pytest.skip(f'real Waymo scenarios not found (set {md.DATA_DIR_ENV})')
  with opened('waymo', data_dir=data_dir) as env:
    assert env.unwrapped.config['num_scenarios'] == 3
    obs, _ = env.reset(options={'scenario_index': 0})
    assert obs.shape == (161,)
    obs, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert np.isfinite(obs).all() and info['cost'] >= 0
