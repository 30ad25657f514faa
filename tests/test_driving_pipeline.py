"""The driving experiment end to end on recorded procedural scenarios, plus its parts.

`experiments/driving.py` runs at `--scale=smoke` on four scenarios recorded from MetaDrive's own
maps (`write_procedural_scenarios`): split, demonstrations, DT and BC guides, every online
method, evaluation on the held-out scenario, table, report and plot, then a rerun that skips
every finished stage. The evaluation, metric aggregation and memory helpers are checked
against hand-computed values.
"""

import json
import pathlib
import time

import numpy as np
import pytest

pytest.importorskip('metadrive')

# pylint: disable=wrong-import-position
from gold_jax.studies import driving
from gold_jax import presets
from gold_jax.driving import memory, metrics, pool
from gold_jax.driving import evaluate as driving_eval
from gold_jax.envs import metadrive as md
from gold_jax.envs import scenarionet_writer
# pylint: enable=wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[1]


def real_data_dir():
  path = REPO / '..' / 'shared' / 'data' / 'womd'
  return path if (path / md.SUMMARY_FILE).is_file() else None


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """Four short recorded scenarios (IDM ego on procedural maps, light traffic)."""
  out = tmp_path_factory.mktemp('scenarios')
  scenarionet_writer.write_procedural_scenarios(out, num_scenarios=4, seed=0, horizon=40)
  return out


@pytest.fixture(scope='module')
def smoke_run(data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('driving')
  config = driving.Config(data_dir=str(data_dir), scale='smoke', test_fraction=0.25, seed=0)
  start = time.perf_counter()
  result = driving.run(config, str(workdir))
  return config, workdir, result, time.perf_counter() - start


class ConstantPolicy:
  """Drives straight with a fixed throttle (a `gold_jax.policies.Policy`)."""

  def __init__(self, throttle=0.3):
    self.action = np.array([0.0, throttle], np.float32)
    self.observed = 0

  def reset(self, n):
    del n

  def act(self, obs):
    return np.tile(self.action, (obs.shape[0], 1))

  def observe(self, action, reward, cost):
    self.observed += len(reward)

  def restart(self, done):
    del done


def test_smoke_run_table(smoke_run):
  config, workdir, result, _ = smoke_run
  rows = {r['method']: r for r in result['rows']}
  assert list(rows) == list(config.methods)  # One row per method, in order.
  for row in rows.values():
    assert row['episodes'] == 1  # One test scenario, one episode.
    for rate in ('success', 'crash', 'out_of_road'):
      assert 0.0 <= row[rate] <= 1.0
    assert np.isfinite(row['reward']) and row['cost'] >= 0.0
  saved = json.loads((workdir / 'results.json').read_text())
  assert [r['method'] for r in saved['rows']] == list(config.methods)
  markdown = (workdir / 'results.md').read_text()
  for name in config.methods:
    assert f'| {name} |' in markdown
  assert (workdir / 'trajectories.png').stat().st_size > 10_000
  for name in ('guides/dt/summary.json', 'guides/bc/summary.json', 'demos/demos.npz'):
    assert (workdir / name).exists(), name
  for method in driving.METHODS.values():
    if method.backbone:
      done = json.loads((workdir / 'online' / method.slug / 'done.json').read_text())
      assert done['training/env_steps'] == presets.driving('smoke').total_steps


def test_smoke_split_is_disjoint_and_held_out(smoke_run, data_dir):
  _, workdir, result, _ = smoke_run
  split_info = result['split']
  train, test = set(split_info['train']['files']), set(split_info['test']['files'])
  assert len(train) == 3 and len(test) == 1 and not train & test
  assert train | test == {p.name for p in md.scenario_files(data_dir)}
  # The demonstrations come from the train scenarios only.
  reports = json.loads((workdir / 'demos' / 'reports.json').read_text())
  assert {r['name'] for r in reports} == train and all(r['kept'] for r in reports)
  # Every evaluation drove the held-out scenario.
  for name in result['rows']:
    cached = json.loads(pathlib.Path(pool.eval_path(workdir, name['method'])).read_text())
    assert [s['scenario_id'] for s in cached['scenarios']] == split_info['test']['ids']


def test_rerun_skips_finished_stages(smoke_run):
  config, workdir, result, _ = smoke_run
  # What each stage writes when it finishes; a rerun that skips every stage rewrites none.
  finished = sorted([*workdir.glob('guides/*/summary.json'), *workdir.glob('online/*/done.json'),
                     *workdir.glob('eval/*.json'), workdir / 'demos' / 'reports.json'])
  assert len(finished) > 8
  before = {p: p.stat().st_mtime_ns for p in finished}
  again = driving.run(config, str(workdir))
  assert again['rows'] == result['rows']
  assert {p: p.stat().st_mtime_ns for p in finished} == before


def test_evaluate_launcher_drives_every_scenario_of_a_directory_once(smoke_run, tmp_path):
  # How a guide does on its own train scenarios: `evaluate --scenarios=<split/train>`.
  from launcher_checks import run_launcher  # pylint: disable=import-outside-toplevel
  _, workdir, _, _ = smoke_run
  train = workdir / 'split' / 'train'
  out = tmp_path / 'dt_on_train'
  done = run_launcher('experiments.evaluate', f'--ckpt={workdir / "guides" / "dt"}',
                      f'--scenarios={train}', f'--out_dir={out}')
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads((out / 'evaluation.json').read_text())
  ids = [s['scenario_id'] for s in result['per_scenario']]
  assert ids == json.loads((workdir / 'split' / 'split.json').read_text())['train']['ids']
  assert result['episodes'] == 3 and 0.0 <= result['success_rate'] <= 1.0
  assert f'on 3 scenarios of {train}' in done.stdout
  bad = run_launcher('experiments.evaluate', f'--ckpt={workdir / "guides" / "dt"}',
                     f'--scenarios={tmp_path}', f'--out_dir={out}')
  assert bad.returncode != 0 and 'dataset_summary.pkl' in bad.stderr


def test_named_test_scenarios(data_dir, tmp_path):
  names = driving._scenario_names(data_dir)
  file_name, scenario_id = list(names.items())[1]
  config = driving.Config(data_dir=str(data_dir), test_scenarios=(scenario_id,))
  split_info = driving.make_split(config, data_dir, tmp_path)
  assert split_info['test']['files'] == [file_name]
  assert set(split_info['train']['files']) == set(names) - {file_name}
  # The parts are ScenarioNet directories over the original files.
  assert [p.resolve() for p in md.scenario_files(split_info['test']['dir'])] == [
      (pathlib.Path(data_dir) / file_name).resolve()]
  with pytest.raises(ValueError, match='not in the data'):
    driving.make_split(driving.Config(test_scenarios=('nope',)), data_dir, tmp_path)


def test_evaluation_plays_each_scenario_once_and_aggregates(data_dir):
  env = driving_eval.make_scenario_env(data_dir, start_scenario_index=1, num_scenarios=2)
  try:
    assert driving_eval.scenario_indices(env) == [1, 2]
    policy = ConstantPolicy()
    result, episodes = driving_eval.evaluate_scenarios(policy, env)
    again = driving_eval.run_scenario(ConstantPolicy(), env, 2)
  finally:
    env.close()
  ids = [driving._scenario_names(data_dir)[p.name] for p in md.scenario_files(data_dir)]
  assert [e['scenario_id'] for e in episodes] == ids[1:3]
  lengths = [len(e['rewards']) for e in episodes]
  assert policy.observed == sum(lengths)
  for e in episodes:
    assert e['ego_xy'].shape == (len(e['rewards']) + 1, 2)
    assert np.linalg.norm(e['ego_xy'][0]) < 1.0  # The ego starts at the frame's origin.
  # Hand-computed aggregates of the two episodes.
  returns = [float(np.sum(e['rewards'], dtype=np.float64)) for e in episodes]
  assert result['episodes'] == 2
  np.testing.assert_allclose(result['reward/mean'], np.mean(returns), rtol=1e-6)
  np.testing.assert_allclose(result['cost/mean'], np.mean([e['costs'].sum() for e in episodes]))
  assert result['success_rate'] == np.mean([e['arrive_dest'][-1] for e in episodes])
  assert result['crash_rate'] == np.mean([e['crash'].any() for e in episodes])
  assert result['length/mean'] == np.mean(lengths)
  # Replays are deterministic: the same scenario and actions give the same episode.
  np.testing.assert_array_equal(again['rewards'], episodes[1]['rewards'])
  rows = driving_eval.episode_rows(episodes)
  assert [r['reward'] for r in rows] == pytest.approx(returns)


def test_table_rows_and_markdown():
  episodes = [dict(rewards=np.array([1.0, 2.0]), costs=np.array([0.0, 1.0]),
                   arrive_dest=np.array([False, True]), crash=np.array([False, True]),
                   out_of_road=np.array([False, False])),
              dict(rewards=np.array([4.0]), costs=np.array([0.0]), arrive_dest=np.array([False]),
                   crash=np.array([False]), out_of_road=np.array([True]))]
  results = {'GOLD(DT-IQL)': {'metrics': metrics.aggregate(episodes)}}
  (row,) = driving.table_rows(results)
  assert row == {'method': 'GOLD(DT-IQL)', 'episodes': 2, 'reward': 3.5, 'cost': 0.5,
                 'success': 0.5, 'crash': 0.5, 'out_of_road': 0.5}
  assert '| GOLD(DT-IQL) | 3.50 | 0.50 | 0.50 | 0.50 | 0.50 | 2 |' in driving.format_table([row])


def test_bad_configs_are_refused():
  with pytest.raises(ValueError, match='methods'):
    driving.validate(driving.Config(methods=('PPO',)))
  with pytest.raises(ValueError, match='scale'):
    driving.validate(driving.Config(scale='huge'))
  with pytest.raises(ValueError, match='test_fraction'):
    driving.validate(driving.Config(test_fraction=1.0))
  paper = presets.driving('paper')
  assert (paper.dt_dropout_rate, paper.dt_warmup_steps, paper.dt_batch_size,
          paper.dt_return_scale, paper.dt_target_returns) == (0.25, 10_000, 512, 100.0,
                                                              (400.0, 1000.0))


def test_memory_figures():
  samples = [100.0, 110.0, 111.0, 112.0, 113.0, 114.0]
  report = memory.summarize(samples, rss_before=90.0, steps=60, seconds=1.0)
  assert (report.rss_start, report.rss_end, report.rss_max) == (100.0, 114.0, 114.0)
  # Second half 112, 113, 114: one MiB per episode, 100 per 100 episodes.
  assert report.growth_per_100 == pytest.approx(100.0)
  assert memory.growth_per_100([5.0, 5.0, 5.0, 5.0]) == pytest.approx(0.0)
  rss = memory.rss_mib()
  psutil = pytest.importorskip('psutil')
  assert rss == pytest.approx(psutil.Process().memory_info().rss / 2**20, rel=0.2)


def test_memory_benchmark_runs_with_and_without_caches(data_dir, tmp_path):
  from experiments import bench_driving_memory  # pylint: disable=import-outside-toplevel
  for store_cache in (False, None):
    out = tmp_path / f'memory_{store_cache}.json'
    result = bench_driving_memory.run(data_dir, episodes=5, store_cache=store_cache,
                                      print_every=0, json_out=str(out), log=lambda line: None)
    assert result['setup']['scenarios'] == 4 and len(result['samples']) == 5
    assert 0 < result['rss_start'] <= result['rss_max']
    assert json.loads(out.read_text())['setup']['store_cache'] == store_cache


def test_real_waymo_split_is_two_to_one():
  data_dir = real_data_dir()
  if data_dir is None:
    pytest.skip('real Waymo scenarios not found at <repo>/../shared/data/womd')
  train, test = driving.split.split_names(list(driving._scenario_names(data_dir)), 0.2, seed=0)
  assert (len(train), len(test)) == (2, 1)


def test_wilson_interval_matches_known_values():
  np.testing.assert_allclose(pool.wilson(0, 10), (0.0, 0.27753), atol=1e-4)
  np.testing.assert_allclose(pool.wilson(5, 10), (0.23659, 0.76341), atol=1e-4)
  np.testing.assert_allclose(pool.wilson(10, 10), (0.72247, 1.0), atol=1e-4)
  with pytest.raises(ValueError):
    pool.wilson(3, 2)


def _fake_seed(workdir, seed, test_files, outcomes):
  """A finished per-seed study: results.json and one eval file (method 'IQL')."""
  workdir.mkdir(parents=True)
  (workdir / 'eval').mkdir()
  split = {'test': {'files': test_files, 'ids': [f'id{i}' for i in range(len(test_files))]},
           'train': {'files': ['t.pkl'], 'ids': ['t']}}
  (workdir / 'results.json').write_text(json.dumps(
      {'rows': [{'method': 'IQL'}], 'split': split, 'config': {'seed': seed}, 'episode_len': 90}))
  scenarios = [{'reward': 10.0 * s, 'cost': 1.0 - s, 'success': s, 'crash': 1.0 - s,
                'out_of_road': 0.0} for s in outcomes]
  (workdir / 'eval' / 'iql.json').write_text(json.dumps({'method': 'IQL',
                                                        'scenarios': scenarios}))


def test_pooling_over_seeds_counts_every_seed_and_scenario(tmp_path):
  files = ['a.pkl', 'b.pkl', 'c.pkl', 'd.pkl']
  _fake_seed(tmp_path / 'seed0', 0, files, [1, 1, 0, 0])
  _fake_seed(tmp_path / 'seed1', 1, files, [1, 1, 1, 0])
  out = pool.pool([str(tmp_path / 'seed0'), str(tmp_path / 'seed1')], str(tmp_path))
  (row,) = out['rows']
  assert row['episodes'] == 8 and row['seeds'] == 2
  np.testing.assert_allclose(row['success'], (5 / 8, *pool.wilson(5, 8)))
  np.testing.assert_allclose(row['crash'][0], 3 / 8)
  np.testing.assert_allclose(row['reward'], (6.25, 1.25))  # Per-seed means 5.0 and 7.5.
  assert [p['success'] for p in row['per_seed']] == [0.5, 0.75]
  runs = (tmp_path / 'runs.csv').read_text().splitlines()
  assert runs[0].endswith('crash,out_of_road') and len(runs) == 3
  assert runs[1].startswith('MetaDrive-Waymo,IQL,0,5,0.5,0.5,4,')
  assert '0.62 [0.31, 0.86]' in (tmp_path / 'table.md').read_text()
  _fake_seed(tmp_path / 'other', 2, files[::-1], [1, 0, 0, 0])
  with pytest.raises(ValueError, match='different held-out scenarios'):
    pool.pool([str(tmp_path / 'seed0'), str(tmp_path / 'other')], str(tmp_path / 'x'))


@pytest.fixture(scope='module')
def extra_dir(tmp_path_factory):
  """Two more recorded scenarios on other maps: a second held-out set."""
  out = tmp_path_factory.mktemp('extra_scenarios')
  scenarionet_writer.write_procedural_scenarios(out, num_scenarios=2, seed=10, horizon=40)
  return out


def test_extra_test_dir_sharing_train_scenarios_is_refused(data_dir, tmp_path):
  config = driving.Config(data_dir=str(data_dir), scale='smoke', test_fraction=0.25,
                          extra_test_dir=str(data_dir), methods=('IQL',))
  with pytest.raises(ValueError, match='shares 3 scenario'):
    driving.run(config, str(tmp_path))
  assert not (tmp_path / 'online').exists()  # Refused before any training.


def test_two_seeds_share_one_split_and_pool(data_dir, extra_dir, tmp_path):
  config = driving.Config(data_dir=str(data_dir), scale='smoke', test_fraction=0.25, seed=3,
                          seeds=2, methods=('BC', 'IQL'), plot_methods=(),
                          extra_test_dir=str(extra_dir), workers=2)
  result = driving.run(config, str(tmp_path))
  splits = [json.loads((tmp_path / f'seed{s}' / 'split' / 'split.json').read_text())['test']
            for s in (3, 4)]
  assert splits[0]['files'] == splits[1]['files']
  assert (tmp_path / 'demos' / 'demos.npz').exists()  # Extracted once, for both seeds.
  assert not (tmp_path / 'seed3' / 'demos').exists()
  rows = {r['method']: r for r in result['pooled']['rows']}
  assert set(rows) == {'BC', 'IQL'} and rows['IQL']['episodes'] == 2 * len(splits[0]['files'])
  seeds = [line.split(',')[2] for line in (tmp_path / 'runs.csv').read_text().splitlines()[1:]]
  assert sorted(seeds) == ['3', '3', '4', '4']
  # The second held-out set: every row scored on both of its scenarios, per seed, pooled apart.
  extra = {r['method']: r for r in result['pooled']['extra']['rows']}
  assert set(extra) == {'BC', 'IQL'} and extra['IQL']['episodes'] == 2 * 2
  assert result['pooled']['extra']['eval_set'] != result['pooled']['eval_set']
  extra_runs = (tmp_path / 'runs_extra.csv').read_text().splitlines()
  assert len(extra_runs) == 1 + 2 * 2 and all(',2,' in line for line in extra_runs[1:])
  assert (tmp_path / 'table_extra.md').exists()
  assert 'Second held-out set: 2 scenarios' in (tmp_path / 'seed3' / 'results.md').read_text()
