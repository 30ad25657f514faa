"""The driving corpus generator: determinism, resuming, settings, dropping, replay, launcher."""

import json
import os
import pathlib
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip('metadrive', reason='MetaDrive is not installed')

from gold_jax.driving import corpus  # pylint: disable=wrong-import-position
from gold_jax.envs import metadrive as md  # pylint: disable=wrong-import-position
from gold_jax.envs import scenarionet_writer as writer  # pylint: disable=wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[1]
SMALL = dict(seed=0, frames=30, traffic_density=(0.05, 0.15), map_blocks=(2, 3))


def load(path):
  with open(path, 'rb') as f:
    return pickle.load(f)


def ego_track(scenario):
  state = scenario['tracks'][scenario['metadata']['sdc_id']]['state']
  return np.asarray(state['position']), np.asarray(state['heading'])


@pytest.fixture(scope='module')
def corpus_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp('corpus')
  report = corpus.generate_corpus(out, 3, workers=1, progress=False, keep_failed=True, **SMALL)
  assert report.generated == 3 and report.reused == 0 and report.written == 3
  return out


def test_scenario_spec_is_deterministic_and_within_ranges():
  specs = [corpus.scenario_spec(7, i, (0.1, 0.3), (2, 5)) for i in range(20)]
  assert specs == [corpus.scenario_spec(7, i, (0.1, 0.3), (2, 5)) for i in range(20)]
  assert all(2 <= s.map_blocks <= 5 and 0.1 <= s.traffic_density <= 0.3 for s in specs)
  assert len({s.map_blocks for s in specs}) > 1 and len({s.map_seed for s in specs}) == 20
  assert corpus.scenario_spec(8, 0, (0.1, 0.3), (2, 5)) != specs[0]
  fixed = corpus.scenario_spec(7, 3, 0.2, 4)
  assert fixed.traffic_density == 0.2 and fixed.map_blocks == 4
  assert corpus.scenario_file_name(7, 12) == 'sd_gold_procedural_v0_s7_000012.pkl'


def test_drop_decision_on_step_infos():
  clean = {'crash_vehicle': False, 'crash_object': False, 'out_of_road': False,
           'crash_sidewalk': False, 'arrive_dest': True}
  assert writer.failure_of(clean) is None
  assert writer.failure_of({**clean, 'crash_vehicle': True}) == ('crash', 'crash_vehicle')
  assert writer.failure_of({**clean, 'crash_object': True}) == ('crash', 'crash_object')
  assert writer.failure_of({**clean, 'out_of_road': True}) == ('out_of_road', 'out_of_road')
  assert writer.failure_of({**clean, 'crash_sidewalk': True}) == ('out_of_road', 'crash_sidewalk')
  both = {**clean, 'out_of_road': True, 'crash_vehicle': True}
  assert writer.failure_of(both) == ('crash', 'crash_vehicle')
  infos = [clean, clean, {**clean, 'out_of_road': True}, {**clean, 'crash_vehicle': True}]
  assert writer.episode_failure(infos) == {'reason': 'out_of_road', 'key': 'out_of_road',
                                           'step': 3}
  assert writer.episode_failure([clean] * 5) is None


def test_corpus_is_scenarionet_and_replays(corpus_dir):
  paths = md.scenario_files(corpus_dir)
  assert [p.name for p in paths] == [corpus.scenario_file_name(0, i) for i in range(3)]
  for i, path in enumerate(paths):
    scenario = md.read_scenario(path)
    assert scenario['length'] <= 30
    meta = scenario['metadata']['gold_corpus']
    spec = corpus.scenario_spec(0, i, SMALL['traffic_density'], SMALL['map_blocks'])
    assert (meta['index'], meta['map_seed'], meta['map_blocks']) == (
        i, spec.map_seed, spec.map_blocks)
  assert not list(corpus_dir.glob('.*'))  # No temporary files left behind.
  assert json.loads((corpus_dir / corpus.SETTINGS_FILE).read_text())['frames'] == 30
  env = md.make_metadrive('waymo', data_dir=corpus_dir, seed=0)
  try:
    obs, _ = env.reset()
    assert obs.shape == env.observation_space.shape
    for _ in range(3):
      obs, _, _, _, info = env.step(np.zeros(2, np.float32))
    assert 'cost' in info
  finally:
    env.close()


def test_same_seed_same_corpus_with_two_workers(corpus_dir, tmp_path):
  report = corpus.generate_corpus(tmp_path, 3, workers=2, progress=False, keep_failed=True,
                                  **SMALL)
  assert report.workers == 2 and report.generated == 3
  first = md.scenario_files(corpus_dir)
  second = md.scenario_files(tmp_path)
  assert [p.name for p in first] == [p.name for p in second]
  for a, b in zip(first, second):
    sa, sb = load(a), load(b)
    assert sa['id'] == sb['id'] and sa['length'] == sb['length']
    for x, y in zip(ego_track(sa), ego_track(sb)):
      np.testing.assert_allclose(x, y)


def test_one_scenario_regenerated_alone_equals_the_corpus_one(corpus_dir):
  name, scenario, _ = corpus.generate_scenario(2, keep_failed=True, **SMALL)
  assert name == corpus.scenario_file_name(0, 2)
  stored = load(corpus_dir / name)
  assert scenario['length'] == stored['length']
  for x, y in zip(ego_track(scenario), ego_track(stored)):
    np.testing.assert_allclose(x, y)


def test_rerun_regenerates_only_what_is_missing(corpus_dir, tmp_path):
  out = tmp_path / 'copy'
  shutil.copytree(corpus_dir, out)
  (out / corpus.scenario_file_name(0, 1)).unlink()
  (out / md.SUMMARY_FILE).unlink()
  (out / corpus.scenario_file_name(0, 2)).write_bytes(b'truncated')  # An unreadable file.
  report = corpus.generate_corpus(out, 3, workers=1, progress=False, keep_failed=True, **SMALL)
  assert (report.generated, report.reused, report.written) == (2, 1, 3)
  assert [p.name for p in md.scenario_files(out)] == [
      corpus.scenario_file_name(0, i) for i in range(3)]
  again = corpus.generate_corpus(out, 3, workers=1, progress=False, keep_failed=True, **SMALL)
  assert (again.generated, again.reused, again.written) == (0, 3, 3)


def test_other_settings_are_refused(corpus_dir, tmp_path):
  for change in ({'frames': 31}, {'map_blocks': 3}, {'keep_failed': False}):
    settings = {**SMALL, 'keep_failed': True, **change}
    with pytest.raises(ValueError, match=list(change)[0]):
      corpus.generate_corpus(corpus_dir, 3, progress=False, **settings)
  foreign = tmp_path / 'foreign'
  foreign.mkdir()
  (foreign / md.SUMMARY_FILE).write_bytes(pickle.dumps({}))
  with pytest.raises(ValueError, match='corpus.json'):
    corpus.generate_corpus(foreign, 1, progress=False, **SMALL)
  with pytest.raises(ValueError, match='map_blocks'):
    corpus.generate_corpus(tmp_path / 'bad', 1, progress=False, **{**SMALL, 'map_blocks': 0})


def test_failed_egos_are_dropped_and_counted(corpus_dir, tmp_path, monkeypatch):
  """The recorder is faked: index 0 crashes, 1 leaves the road, 2 drives (a stored scenario)."""
  stored = load(corpus_dir / corpus.scenario_file_name(0, 0))
  failures = {0: {'reason': 'crash', 'key': 'crash_vehicle', 'step': 4},
              1: {'reason': 'out_of_road', 'key': 'out_of_road', 'step': 9}}
  calls = []

  def fake(map_seed, stop_on_failure, scenario_id, metadata, **_):
    index = metadata['gold_corpus']['index']
    calls.append(index)
    assert map_seed == corpus.scenario_spec(0, index, SMALL['traffic_density'],
                                            SMALL['map_blocks']).map_seed
    if index in failures:
      assert stop_on_failure
      return None, failures[index]
    scenario = {**stored, 'id': scenario_id,
                'metadata': {**stored['metadata'], 'id': scenario_id, **metadata}}
    return scenario, None

  monkeypatch.setattr(writer, 'record_procedural_episode', fake)
  report = corpus.generate_corpus(tmp_path, 3, workers=1, progress=False, **SMALL)
  assert (report.written, report.dropped_crash, report.dropped_out_of_road) == (1, 1, 1)
  assert report.dropped == ((0, 'crash', 'crash_vehicle', 4), (1, 'out_of_road', 'out_of_road', 9))
  assert [p.name for p in md.scenario_files(tmp_path)] == [corpus.scenario_file_name(0, 2)]
  assert 'scenario 0: crash (crash_vehicle at step 4)' in '\n'.join(report.lines())
  # A rerun records nothing again: dropped indices keep their markers.
  again = corpus.generate_corpus(tmp_path, 3, workers=1, progress=False, **SMALL)
  assert calls == [0, 1, 2] and again.generated == 0 and again.dropped == report.dropped


def test_expert_ego_records():
  name, scenario, failure = corpus.generate_scenario(
      0, seed=0, frames=15, traffic_density=0.05, map_blocks=2, ego_policy='expert',
      keep_failed=True)
  assert name == corpus.scenario_file_name(0, 0)
  assert scenario['length'] == 15 and scenario['metadata']['gold_corpus']['ego_policy'] == 'expert'
  assert failure is None or failure['reason'] in writer.FAILURE_REASONS


def test_launcher_smoke(tmp_path):
  out = tmp_path / 'launched'
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.generate_corpus', f'--out_dir={out}',
       '--num_scenarios=2', '--frames=20', '--noprogress', '--keep_failed'],
      cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'scenarios/minute' in result.stdout and 'dropped:' in result.stdout
  report = json.loads((out / corpus.REPORT_FILE).read_text())
  assert report['written'] == 2 and report['generated'] == 2
  assert len(md.scenario_files(out)) == 2
  bad = subprocess.run(
      [sys.executable, '-m', 'experiments.generate_corpus', f'--out_dir={out}',
       '--num_scenarios=2', '--frames=21', '--noprogress', '--keep_failed'],
      cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
  assert bad.returncode == 2 and 'frames' in bad.stderr
