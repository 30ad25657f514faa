"""Demonstrations from logs, scenario splits, driving metrics and bird's-eye plots.

Tracking tolerance: on scenarios recorded from MetaDrive's own maps (IDM ego, no accidents), the
demonstration stays within 0.5 m of the logged ego position on average and 1.5 m at worst; on
the real Waymo logs within 0.5 m on average and 1.0 m at worst.
"""

import copy
import logging
import os
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip('metadrive')

# pylint: disable=wrong-import-position
from gold_jax.data import trajectories
from gold_jax.driving import demos, metrics, plots, split, tracking
from gold_jax.envs import metadrive as md
from gold_jax.envs import scenarionet_writer
from gold_jax.stages import extract_demos
# pylint: enable=wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[1]
MEAN_TOL, MAX_TOL = 0.5, 1.5


def real_data_dir():
  path = pathlib.Path(os.environ.get(md.DATA_DIR_ENV) or REPO / '..' / 'shared' / 'data' / 'womd')
  return path if (path / md.SUMMARY_FILE).is_file() else None


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """Two recorded procedural scenarios plus a copy of the first whose ego log jumps 8 m."""
  out = tmp_path_factory.mktemp('logs')
  paths = scenarionet_writer.write_procedural_scenarios(out, num_scenarios=2, seed=0, horizon=80)
  scenario = md.read_scenario(paths[0])
  state = scenario['tracks'][scenario['metadata']['sdc_id']]['state']
  state['position'][40:, 1] += 8.0  # A teleport no car can follow.
  name = 'sd_jump.pkl'
  scenarionet_writer.atomic_pickle(scenario, out / name)
  with open(out / md.SUMMARY_FILE, 'rb') as f:
    summary = pickle.load(f)
  summary[name] = copy.deepcopy(summary[paths[0].name])
  scenarionet_writer.atomic_pickle(summary, out / md.SUMMARY_FILE)
  scenarionet_writer.atomic_pickle({k: '' for k in summary}, out / md.MAPPING_FILE)
  return out


@pytest.fixture(scope='module')
def extracted(data_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp('demos')
  return out, extract_demos.extract_to_dir(data_dir, out, workers=1, with_plots=True)


def test_demonstrations_follow_the_logged_path(extracted):
  out, reports = extracted
  kept = [r for r in reports if r.kept]
  assert [r.name.startswith('sd_gold_procedural') for r in kept] == [True, True]
  for r in kept:
    assert r.mean_error < MEAN_TOL and r.max_error < MAX_TOL, r
    assert r.steps >= 0.8 * (r.log_steps - 1)
    episode = demos.load_episode(out / 'episodes' / f'{pathlib.Path(r.name).stem}.npz')
    n = len(episode['rewards'])
    assert n == r.steps and episode['observations'].shape == (n, 161)
    assert episode['actions'].shape == (n, 2) and np.abs(episode['actions']).max() <= 1.0
    np.testing.assert_allclose(episode['observations'][1:], episode['next_observations'][:-1])
    done = episode['terminals'] | episode['timeouts']
    assert done[-1] and not done[:-1].any()
    assert episode['rewards'].sum() == pytest.approx(r.reward, rel=1e-5)
    assert (out / 'plots' / f'{pathlib.Path(r.name).stem}.png').stat().st_size > 0
  dataset = trajectories.TrajectoryDataset.load(out / 'demos.npz')
  assert dataset.task == demos.TASK and dataset.obs_dim == 161 and dataset.act_dim == 2
  np.testing.assert_array_equal(dataset.episode_lengths(), [r.steps for r in kept])
  np.testing.assert_allclose(dataset.episode_returns(), [r.reward for r in kept], rtol=1e-5)


def test_unfollowable_log_is_dropped_with_reason(extracted):
  _, reports = extracted
  (jump,) = [r for r in reports if r.name == 'sd_jump.pkl']
  assert not jump.kept and 'log not followed' in jump.reason and jump.max_error > 3.0


def test_extraction_resumes_without_redoing_work(extracted, data_dir, monkeypatch):
  out, reports = extracted
  def fail(job):
    raise AssertionError(f'{job} was already done')
  monkeypatch.setattr(extract_demos, '_process', fail)
  again = extract_demos.extract_to_dir(data_dir, out, workers=1)
  assert again == reports
  assert 'mean_err_m' in (out / 'tracking_errors.csv').read_text()


def test_extraction_launcher_runs_with_two_workers(data_dir, tmp_path):
  out = tmp_path / 'demos'
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.extract_waymo_demos', f'--data_dir={data_dir}',
       f'--workdir={out}', '--workers=2', '--extract.max_max_error=3.0'],
      capture_output=True, text=True, cwd=REPO, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'kept 2 of 3 scenarios' in result.stdout
  assert trajectories.TrajectoryDataset.load(out / 'demos.npz').num_episodes == 2


def _scenario_file(tmp_path, data_dir, name, edit):
  scenario = md.read_scenario(md.scenario_files(data_dir)[1])
  edit(scenario, scenario['tracks'][scenario['metadata']['sdc_id']]['state'])
  path = tmp_path / name
  with open(path, 'wb') as f:
    pickle.dump(scenario, f)
  return path


@pytest.mark.parametrize('name,edit,reason', [
    ('sd_no_ego.pkl', lambda s, st: s['metadata'].update(sdc_id='nobody'), 'no ego track'),
    ('sd_start.pkl', lambda s, st: st['valid'].__setitem__(0, 0), 'not valid at the first step'),
    ('sd_short.pkl', lambda s, st: st['valid'].__setitem__(slice(10, None), 0), 'only 10'),
    ('sd_version.pkl', lambda s, st: s.update(version=3), 'unknown format version'),
    ('sd_keys.pkl', lambda s, st: s.pop('map_features'), 'lacks keys'),
])
def test_invalid_scenarios_are_dropped_with_a_warning(tmp_path, data_dir, caplog, name, edit,
                                                      reason):
  path = _scenario_file(tmp_path, data_dir, name, edit)
  with caplog.at_level(logging.WARNING):
    episode, report = demos.extract_scenario(None, 0, path)  # Rejected before any simulation.
  assert episode is None and not report.kept and reason in report.reason
  assert name in caplog.text and reason in caplog.text


def test_not_a_pickle_is_dropped(tmp_path, caplog):
  path = tmp_path / 'sd_text.pkl'
  path.write_text('hello')
  episode, report = demos.extract_scenario(None, 0, path)
  assert episode is None and 'cannot read' in report.reason


def test_real_waymo_demonstrations():
  data_dir = real_data_dir()
  if data_dir is None:
    pytest.skip(f'real Waymo scenarios not found (set {md.DATA_DIR_ENV})')
  results = list(demos.extract_demos(data_dir))
  assert len(results) == 3
  for _, episode, report in results:
    assert report.kept, report
    assert report.mean_error < 0.5 and report.max_error < 1.0, report
    assert np.isfinite(episode['rewards']).all() and episode['observations'].shape[1] == 161


def test_split_is_deterministic_and_disjoint():
  names = [f'sd_{i}.pkl' for i in range(50)]
  train, test = split.split_names(names, test_fraction=0.2, seed=3)
  assert len(test) == 10 and len(train) == 40
  assert not set(train) & set(test) and set(train) | set(test) == set(names)
  assert split.split_names(names[::-1], 0.2, seed=3)[1] == test[::-1]  # Order-independent.
  assert split.split_names(names, 0.2, seed=4)[1] != test
  assert split.split_names(names[:3], 0.2, seed=0)[1]  # Small sets still get a test scenario.
  assert split.index_split(10, 0.3) == (dict(start_scenario_index=0, num_scenarios=7),
                                         dict(start_scenario_index=7, num_scenarios=3))


def test_write_split_points_at_original_files(tmp_path, data_dir):
  parts = split.write_split(data_dir, tmp_path / 'split', test_fraction=0.34, seed=0)
  train = md.scenario_files(parts['train'])
  test = md.scenario_files(parts['test'])
  assert len(train) == 2 and len(test) == 1
  originals = {p.resolve() for p in md.scenario_files(data_dir)}
  assert {p.resolve() for p in train + test} == originals
  assert not list(parts['train'].glob('sd_*'))  # Nothing copied.


def test_metrics_on_hand_made_episodes():
  def ep(rewards, costs, arrive=False, crash_at=None, off_road=False):
    before_last = np.zeros(len(rewards) - 1, bool)
    crash = np.zeros(len(rewards), bool)
    if crash_at is not None:
      crash[crash_at] = True
    return dict(rewards=np.array(rewards), costs=np.array(costs), crash=crash,
                arrive_dest=np.r_[before_last, arrive], out_of_road=np.r_[before_last, off_road])
  result = metrics.aggregate([
      ep([1, 2], [0, 0], arrive=True), ep([3, 0, 1], [1, 0, 1], crash_at=0),
      ep([0], [2], off_road=True), ep([2, 2], [0, 1], arrive=True, crash_at=1)])
  assert result['episodes'] == 4
  assert result['reward/mean'] == pytest.approx((3 + 4 + 0 + 4) / 4)
  assert result['cost/mean'] == pytest.approx((0 + 2 + 2 + 1) / 4)
  assert result['success_rate'] == 0.5 and result['crash_rate'] == 0.5
  assert result['out_of_road_rate'] == 0.25 and result['length/mean'] == 2.0
  assert metrics.episode_stats(dict(rewards=[1.0], costs=[0.0]))['success'] == 0.0
  with pytest.raises(ValueError):
    metrics.aggregate([])


def test_plot_writes_png(tmp_path, data_dir):
  scenario = md.read_scenario(md.scenario_files(data_dir)[0])
  log = tracking.ego_log(scenario)
  path = plots.plot_scenario(scenario, tmp_path / 'bev.png',
                             paths={'policy': log.xy - log.xy[0] + [0.0, 1.5]})
  assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert not [p for p in tmp_path.iterdir() if p.name != 'bev.png']
