"""Scenarios of other lengths than WOMD's 91 frames (nuScenes ~200, resampled ~40, Argoverse).

A replay env over a corpus reports its longest scenario's length as the episode length, and
each episode runs to the end of its own log (plus the allowed extra steps), never cut at 90
steps; the DT's timestep table covers the longest demonstration; the jump-start curriculum's T
is the corpus's longest scenario, and a horizon past a scenario's end lets the guide drive all
of it; a demonstration shorter than `ExtractConfig.min_length` is dropped with the reason.
"""

import pathlib
import pickle
import shutil

import numpy as np
import pytest

from gold_jax import jsrl
from gold_jax import presets
from gold_jax.driving import demos
from gold_jax.driving import tracking
from gold_jax.envs import metadrive as md
from gold_jax.stages import distill

TASK = demos.TASK
SHORT, LONG = 40, 150  # Frames: a 2 Hz-resampled nuScenes log; a 15 s log at 10 Hz.


def metadrive_or_skip():
  try:
    import metadrive  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError as e:
    pytest.skip(f'MetaDrive is unavailable ({e})')


# ---------------------------------------------------------------- without the simulator


def test_a_demonstration_shorter_than_min_length_is_dropped_with_the_reason(
    monkeypatch, tmp_path):
  # An ego that leaves the road at its first step: one env step driven, "arriving" at once.
  path = tmp_path / 'sd_short.pkl'
  monkeypatch.setattr(demos.md, 'read_scenario', lambda p: {'id': 'short'})
  monkeypatch.setattr(demos.tracking, 'ego_log', lambda scenario, min_steps: None)
  one_step = {k: np.zeros((1,), bool) for k in demos.STEP_FIELDS}
  one_step['arrive_dest'][:] = True
  report = demos.Report(name='', scenario_id='short', kept=True, steps=1, log_steps=91,
                        mean_error=0.0, max_error=0.0, success=True, out_of_road=True)
  monkeypatch.setattr(demos, 'demonstrate', lambda env, index, config: (one_step, report))

  episode, dropped = demos.extract_scenario(None, 0, path)
  assert episode is None and not dropped.kept
  assert dropped.reason == 'too short: 1 steps < min_length 10'
  assert dropped.name == 'sd_short.pkl' and dropped.steps == 1

  episode, kept = demos.extract_scenario(None, 0, path, demos.ExtractConfig(min_length=1))
  assert episode is one_step and kept.kept and kept.reason == ''
  with pytest.raises(ValueError, match='min_length'):
    demos.ExtractConfig(min_length=0)


def test_the_curriculum_T_is_the_episode_length_and_a_horizon_past_the_end_is_all_guide():
  config = distill.Config(task=TASK, guide='dt', guide_ckpt='x', backbone='iql')
  # T = the corpus's longest scenario (149 steps for 150 frames), not WOMD's 90.
  schedule = distill.make_schedule(config, 10.0, LONG - 1)
  assert schedule.stages == jsrl.horizons_from_fractions(jsrl.DEFAULT_FRACTIONS, LONG - 1)
  assert schedule.horizon == round(5 / 6 * (LONG - 1)) == 124 > 90

  class Scripted:  # Records who acted; the student must never be asked.
    def __init__(self, name):
      self.name, self.calls = name, 0

    def reset(self, n):
      pass

    def act(self, obs):
      if self.name == 'student':
        raise AssertionError('the student acted before the horizon')
      self.calls += 1
      return np.zeros((obs.shape[0], 2), np.float32)

    def observe(self, action, reward, cost):
      pass

    def restart(self, done):
      pass

  guide = Scripted('guide')
  policy = jsrl.JSRLPolicy(guide, Scripted('student'), horizon=schedule.horizon)
  policy.reset(1)
  for _ in range(SHORT - 1 + 10):  # A 40-frame scenario: its log plus the allowed extra steps.
    policy.act(np.zeros((1, 3), np.float32))
    assert policy.from_guide.all()
    policy.observe(np.zeros((1, 2)), np.zeros(1), np.zeros(1))
  assert guide.calls == SHORT - 1 + 10


# ---------------------------------------------------------------- with MetaDrive


@pytest.fixture(scope='module')
def corpora(tmp_path_factory):
  """{'short': 40 frames, 'long': 150 frames, 'mixed': both in one directory}."""
  metadrive_or_skip()
  from gold_jax.driving import corpus  # pylint: disable=import-outside-toplevel
  root = tmp_path_factory.mktemp('foreign')
  dirs = {}
  for name, frames, seed in (('short', SHORT, 0), ('long', LONG, 1)):
    dirs[name] = root / name
    corpus.generate_corpus(dirs[name], num_scenarios=1, seed=seed, frames=frames, workers=1,
                           progress=False)
  mixed = dirs['mixed'] = root / 'mixed'
  mixed.mkdir()
  summary = {}
  for name in ('short', 'long'):
    with open(dirs[name] / md.SUMMARY_FILE, 'rb') as f:
      part = pickle.load(f)
    for file_name in part:
      shutil.copy(dirs[name] / file_name, mixed / file_name)
    summary.update(part)
  with open(mixed / md.SUMMARY_FILE, 'wb') as f:
    pickle.dump(summary, f)
  with open(mixed / md.MAPPING_FILE, 'wb') as f:
    pickle.dump({name: '' for name in summary}, f)
  return dirs


def test_scenario_lengths_and_the_episode_length_of_a_corpus(corpora, tmp_path):
  assert md.scenario_lengths(corpora['mixed']) == [SHORT, LONG]
  assert md.episode_steps(corpora['mixed']) == LONG - 1
  assert md.episode_steps(corpora['short']) == SHORT - 1
  assert md.episode_steps(corpora['mixed'], start=0, num=1) == SHORT - 1
  # Without ScenarioNet's track_length metadata, the scenario files say it.
  bare = tmp_path / 'bare'
  shutil.copytree(corpora['mixed'], bare)
  with open(bare / md.SUMMARY_FILE, 'rb') as f:
    summary = pickle.load(f)
  with open(bare / md.SUMMARY_FILE, 'wb') as f:
    pickle.dump({name: {} for name in summary}, f)
  assert md.scenario_lengths(bare) == [SHORT, LONG]
  womd = pathlib.Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'womd'
  if (womd / md.SUMMARY_FILE).is_file():
    assert md.episode_steps(womd) == 90  # WOMD: 91 frames, 90 steps, as before.


def test_the_study_episode_length_covers_a_longer_second_held_out_set(corpora, tmp_path):
  # A study trained on 40-frame scenarios and also scored on 150-frame ones: its envs, the
  # DT's timestep table and the curriculum's T take the longer set's length.
  from gold_jax.studies import driving  # pylint: disable=import-outside-toplevel
  train = tmp_path / 'split' / 'train'
  shutil.copytree(corpora['short'], train)
  assert driving.episode_len(train) == SHORT - 1
  assert driving.episode_len(train, str(corpora['long'])) == LONG - 1
  config = driving.Config(extra_test_dir=str(corpora['long']))
  p = presets.driving('smoke')
  assert driving.guide_config('dt', p, 'demos.npz', train, config).max_episode_steps == LONG - 1
  online = driving.online_config(driving.METHODS['GOLD(DT-IQL)'], p, 'x', train, config)
  assert online.max_episode_steps == LONG - 1
  # Added on a resume, after runs were sized for the 40-frame scenarios: refused.
  split_info = {'train': {'dir': str(train), 'ids': ['none-shared']}}
  workdir = tmp_path / 'study'
  assert driving.extra_held_out(config, split_info, workdir)['episode_len'] == LONG - 1
  (workdir / 'guides' / 'dt').mkdir(parents=True)
  (workdir / 'guides' / 'dt' / 'config.json').write_text('{"max_episode_steps": 39}')
  with pytest.raises(ValueError, match=r'149 steps, longer than .*guides/dt: 39'):
    driving.extra_held_out(config, split_info, workdir)
  # Started with the long set from its first run: the resume goes on.
  (workdir / 'guides' / 'dt' / 'config.json').write_text(f'{{"max_episode_steps": {LONG - 1}}}')
  assert driving.extra_held_out(config, split_info, workdir)['episode_len'] == LONG - 1
  short = driving.Config(extra_test_dir=str(corpora['short']))
  assert driving.extra_held_out(short, split_info, workdir)['episode_len'] == SHORT - 1


def _drive(env, index, policy=None):
  """Plays scenario `index` of a SafeEnv, following the logged ego path (then braking);
  with `policy` (a JSRLPolicy whose guide is the tracker), through it. Returns (steps,
  terminated, truncated, guide flags)."""
  env.reset(options={'scenario_index': index})
  base = env.env.unwrapped
  log = tracking.ego_log(base.engine.data_manager.current_scenario, 2)
  ego = base.agent
  tracker = tracking.LogTracker(log, ego.FRONT_WHEELBASE + ego.REAR_WHEELBASE, ego.max_steering)
  t, flags = 0, []

  def track():
    if t < len(log.xy) - 1:
      return tracker.act(t, np.array(ego.position), ego.heading_theta, ego.speed)
    return np.array([0.0, -1.0], np.float32)  # After the log: brake.

  if policy is not None:
    policy.guide.track = track
    policy.reset(1)
  while True:
    if policy is None:
      action = track()
    else:
      action = policy.act(np.zeros((1, env.obs_dim), np.float32))[0]
      flags.append(bool(policy.from_guide[0]))
    _, reward, cost, terminated, truncated, _ = env.step(action)
    if policy is not None:
      policy.observe(action[None], np.array([reward]), np.array([cost]))
    t += 1
    if terminated or truncated:
      return t, terminated, truncated, flags


class _TrackerGuide:
  track = None

  def reset(self, n):
    pass

  def act(self, obs):
    return np.asarray(self.track(), np.float32)[None]

  def observe(self, action, reward, cost):
    pass

  def restart(self, done):
    pass


class _NoStudent(_TrackerGuide):
  def act(self, obs):
    raise AssertionError('the student acted within the guide horizon')


def test_each_scenario_replays_to_its_own_end_not_to_90_steps(corpora):
  from gold_jax import envs  # pylint: disable=import-outside-toplevel
  mixed = corpora['mixed']
  raw = md.make_metadrive('waymo', data_dir=mixed)
  try:
    assert raw.max_episode_steps == LONG - 1  # The longest scenario, not 90.
    config = raw.unwrapped.config
    assert config['horizon'] is None and config['allowed_more_steps'] == 10
  finally:
    raw.close()

  with envs.make(TASK, data_dir=str(mixed)) as env:  # Without an override: the corpus's length.
    assert env.spec.max_episode_steps == LONG - 1
  length = md.episode_steps(mixed)
  with envs.make(TASK, data_dir=str(mixed), max_episode_steps=length) as env:
    assert env.spec.max_episode_steps == LONG - 1 and env.env.max_episode_steps == LONG - 1
    steps, terminated, _, _ = _drive(env, 1)
    assert env.env.unwrapped.engine.data_manager.current_scenario_length == LONG
    assert steps > 90, f'a {LONG}-frame scenario stopped after {steps} steps'
    assert steps <= LONG - 1
    assert terminated or steps == LONG - 1
    # The curriculum's T is the env's episode length; its first horizon (124 steps) lies past
    # the end of the 40-frame scenario, so the guide drives all of it, up to the end of the
    # log plus MetaDrive's allowed extra steps at most.
    schedule = distill.make_schedule(
        distill.Config(task=TASK, guide='dt', guide_ckpt='x', backbone='iql'), 10.0,
        env.spec.max_episode_steps)
    policy = jsrl.JSRLPolicy(_TrackerGuide(), _NoStudent(), horizon=schedule.horizon)
    assert schedule.horizon > SHORT
    steps, terminated, truncated, flags = _drive(env, 0, policy)
    assert env.env.unwrapped.engine.data_manager.current_scenario_length == SHORT
    assert all(flags) and len(flags) == steps
    assert steps <= SHORT + 10
    assert terminated or (truncated and steps == SHORT + 10)


def test_a_dt_on_150_step_demos_acts_through_all_its_timesteps(corpora, tmp_path):
  from gold_jax.checkpoints import checkpoint_dir  # pylint: disable=import-outside-toplevel
  from gold_jax.policies import load_guide  # pylint: disable=import-outside-toplevel
  from gold_jax.stages import train_guide  # pylint: disable=import-outside-toplevel
  episodes = []
  for _, episode, report in demos.extract_demos(corpora['long']):
    assert episode is not None, report.reason
    assert report.steps > 90  # Demonstrated to the end of the log, not cut at 90.
    episodes.append(episode)
  dataset = tmp_path / 'demos.npz'
  demos.save_dataset(dataset, episodes)
  workdir = tmp_path / 'dt'
  # No episode-length override: the env reports the task's default; the table still covers
  # the demonstrations.
  train_guide.run(train_guide.Config(
      algo='dt', dataset=str(dataset), task=TASK, steps=2, updates_per_call=1, batch_size=4,
      embed_dim=16, num_layers=1, context_len=4, warmup_steps=1, eval_episodes=0, log_every=1,
      checkpoint_every=2, progress=False, tensorboard=False, data_parallel=False,
      env_options={'data_dir': str(corpora['long'])}), str(workdir))
  guide = load_guide(checkpoint_dir(str(workdir), of_run=True))
  max_timestep = guide.state.config.max_timestep
  episode = episodes[0]
  steps = len(episode['actions'])
  assert max_timestep >= steps > 90
  guide.reset(1)
  seen = []
  for t in range(steps):  # The guide acts through the whole recorded episode.
    seen.append(int(guide.ctx.timestep[0]))
    action = guide.act(episode['observations'][t][None])
    assert action.shape == (1, 2) and np.all(np.isfinite(action))
    guide.observe(episode['actions'][t][None], episode['rewards'][t][None],
                  episode['costs'][t][None])
  assert seen == list(range(steps)) and max(seen) > 90
  assert max(seen) < max_timestep  # Inside the table: never clipped to its last entry.
