"""gold_jax.stages.collect: expert training, demonstration rollouts, dataset layout, resumption."""

import json
import os

import chex
import numpy as np
import pytest

from gold_jax.stages import collect
from gold_jax import configs, envs
from gold_jax.checkpoints import CheckpointManager
from gold_jax.data.trajectories import TrajectoryDataset


def _tiny(**overrides) -> collect.Config:
  values = dict(task='Car-Circle', expert_steps=60, hidden_dims=(8, 8),
                loop=dict(batch_size=16, train_every=10, learning_starts=30), log_every=30,
                episodes=3,
                noise_fraction=1 / 3, max_episode_steps=20, progress=False, tensorboard=False)
  return collect.Config(**configs.merge(values, **overrides))


def test_rollout_records_consistent_episodes():
  env = envs.make_vec('Car-Circle', 2, max_episode_steps=15)
  try:
    policy = lambda obs: np.tile(np.array([[0.5, -0.5]], np.float32), (obs.shape[0], 1))
    noisy = np.array([False, True, False])
    episodes = collect.rollout(policy, env, 3, seed=5, noisy=noisy, noise='random')
    again = collect.rollout(policy, env, 3, seed=5)
  finally:
    env.close()
  assert len(episodes) == 3
  for i, episode in enumerate(episodes):
    chex.assert_shape([episode['observations'], episode['next_observations']], (15, 8))
    chex.assert_shape(episode['actions'], (15, 2))
    chex.assert_shape([episode['rewards'], episode['costs']], (15,))
    # Within an episode, each step starts where the previous one ended.
    np.testing.assert_array_equal(episode['observations'][1:],
                                  episode['next_observations'][:-1])
    assert episode['timeouts'][-1] and not episode['terminals'].any()
    assert not episode['timeouts'][:-1].any()
    assert np.all(np.abs(episode['actions']) <= 1.0)
  # Clean episodes replay the policy exactly; episode i starts from the state of seed 5 + i.
  np.testing.assert_array_equal(episodes[0]['actions'], np.tile([0.5, -0.5], (15, 1)))
  for i in range(3):
    np.testing.assert_array_equal(episodes[i]['observations'][0], again[i]['observations'][0])
  # The noisy episode plays uniform random actions.
  assert np.abs(episodes[1]['actions'] - np.array([0.5, -0.5])).max() > 0.5


def test_noisy_episodes_fraction():
  mask = collect.noisy_episodes(10, 0.3, seed=0)
  assert mask.sum() == 3
  np.testing.assert_array_equal(mask, collect.noisy_episodes(10, 0.3, seed=0))
  assert collect.noisy_episodes(4, 0.0, seed=0).sum() == 0
  assert collect.noisy_episodes(4, 1.0, seed=0).all()


def test_validation_errors():
  with pytest.raises(ValueError, match='lambda rule'):
    collect.validate(_tiny(multiplier=dict(rule='ppo')))
  with pytest.raises(ValueError, match='noise_fraction'):
    collect.validate(_tiny(noise_fraction=1.5))
  with pytest.raises(ValueError, match='train_every'):
    collect.validate(_tiny(num_envs=3))


def _check_run(workdir, config, summary):
  dataset = TrajectoryDataset.load(summary['dataset'])
  meta = json.load(open(os.path.join(workdir, 'dataset.json')))
  spec = envs.get_spec(config.task)
  assert dataset.task == meta['task'] == spec.name
  assert dataset.num_episodes == meta['num_episodes'] == config.episodes
  np.testing.assert_array_equal(dataset.episode_lengths(), [config.max_episode_steps] * 3)
  np.testing.assert_allclose(meta['episode_returns'], dataset.episode_returns(), rtol=1e-6)
  np.testing.assert_allclose(meta['episode_costs'], dataset.episode_costs(), rtol=1e-6)
  assert sum(meta['noisy']) == 1
  clean = ~np.asarray(meta['noisy'])
  np.testing.assert_allclose(summary['demonstration_reward_mean'],
                             dataset.episode_returns()[clean].mean(), rtol=1e-6)
  # The kept expert's figures come from the evaluation episodes.
  assert summary['expert_eval_episodes'] == config.final_episodes
  assert summary['expert_safe'] == (summary['expert_cost_mean'] <= summary['cost_limit'])
  assert (meta['obs_dim'], meta['act_dim']) == (dataset.obs_dim, dataset.act_dim)
  with CheckpointManager(os.path.join(workdir, 'checkpoints')) as manager:
    assert manager.latest_step() == config.expert_steps
    extra = manager.read_metadata()['extra']
  assert extra['task'] == spec.name and extra['algo'] == 'sac'
  return dataset


def test_collect_bullet_end_to_end_and_resume(tmp_path, capsys):
  config = _tiny()
  workdir = str(tmp_path / 'expert')
  summary = collect.run(config, workdir)
  assert 'expert on Car-Circle (env step 60): reward' in capsys.readouterr().out
  first = _check_run(workdir, config, summary)
  rows = open(os.path.join(workdir, 'metrics.csv')).read().splitlines()
  assert rows[0].startswith('step,') and 'loss/critic' in rows[0]
  assert [r.split(',')[0] for r in rows[1:3]] == ['30', '60']

  # Rerunning reuses the finished expert: no new checkpoint, and the same demonstrations.
  again = collect.run(config, workdir)
  second = _check_run(workdir, config, again)
  np.testing.assert_array_equal(first.actions, second.actions)
  with CheckpointManager(os.path.join(workdir, 'checkpoints')) as manager:
    assert manager.all_steps() == [30, 60]

  # A longer budget continues from the last checkpoint instead of starting over.
  longer = collect.run(_tiny(expert_steps=90), workdir)
  assert longer['expert_steps'] == 90
  with CheckpointManager(os.path.join(workdir, 'checkpoints')) as manager:
    assert manager.all_steps() == [60, 90]

  with pytest.raises(ValueError, match='different config'):
    collect.run(_tiny(hidden_dims=(4, 4)), workdir)


def test_exported_expert_records_the_same_demonstrations_without_training(tmp_path):
  config = _tiny(noise_fraction=0.0)
  trained = collect.run(config, str(tmp_path / 'trained'))
  exported = collect.expert_path(str(tmp_path / 'trained'))
  assert trained['expert_policy'] == exported and os.path.getsize(exported) < 100_000
  replay_dir = str(tmp_path / 'replayed')
  replayed = collect.run(_tiny(noise_fraction=0.0, expert_policy=exported), replay_dir)
  assert not os.path.exists(os.path.join(replay_dir, 'checkpoints'))  # Nothing trained.
  first = TrajectoryDataset.load(trained['dataset'])
  second = TrajectoryDataset.load(replayed['dataset'])
  np.testing.assert_allclose(first.actions, second.actions, atol=1e-5)
  for key in ('expert_reward_mean', 'expert_cost_mean', 'eval_set', 'expert_checkpoint_step',
              'expert_validation_cost_mean'):
    assert replayed[key] == pytest.approx(trained[key], abs=1e-4), key
  # An expert of another task, or no file, is refused with the reason.
  with pytest.raises(ValueError, match='an expert of Car-Circle'):
    collect.run(_tiny(task='Point-Goal', expert_policy=exported), str(tmp_path / 'other'))
  with pytest.raises(ValueError, match='no such exported expert'):
    collect.run(_tiny(expert_policy=str(tmp_path / 'none.npz')), str(tmp_path / 'none'))


def test_collect_safety_gymnasium_npz(tmp_path):
  config = _tiny(task='Point-Goal', multiplier=dict(rule='fixed', value=1.0), expert_steps=30,
                 loop=dict(learning_starts=20), log_every=30, dataset_format='npz',
                 noise='gaussian')
  workdir = str(tmp_path / 'pg')
  summary = collect.run(config, workdir)
  assert summary['dataset'].endswith('dataset.npz')
  dataset = _check_run(workdir, config, summary)
  with envs.make('Point-Goal') as env:
    assert dataset.obs_dim == env.obs_dim
  assert summary['lambda'] == pytest.approx(1.0)  # A fixed rule keeps lambda.


def test_rank_prefers_safe_experts_by_reward_then_low_cost():
  def v(reward, cost):
    return {'validation/reward_mean': reward, 'validation/cost_mean': cost}
  kappa = 10.0
  ranked = sorted([v(50, 11), v(30, 10), v(40, 2), v(90, 40), v(0, 0)],
                  key=lambda x: collect._rank(x, kappa), reverse=True)
  assert ranked == [v(40, 2), v(30, 10), v(0, 0), v(50, 11), v(90, 40)]


def _scripted_evaluate(validations, final):
  """A stand-in for `evaluate`: validation calls return `validations` in turn, the final
  evaluation (prefix 'expert_') returns `final`; both as (reward, cost)."""
  calls = []

  def fake(policy, env, num_episodes, seed=0, prefix='evaluation/'):
    calls.append((prefix, seed, num_episodes))
    reward, cost = final if prefix == 'expert_' else validations[len(calls) - 1]
    return {prefix + 'reward_mean': reward, prefix + 'reward_std': 0.0,
            prefix + 'cost_mean': cost, prefix + 'cost_std': 0.0,
            prefix + 'episode_length': 20.0}

  def fake_set(policy, env, eval_set, num_episodes=None, prefix='evaluation/'):
    return fake(policy, env, eval_set.episodes, eval_set.reset_seeds[0], prefix)

  return fake, fake_set, calls


@pytest.mark.parametrize('validations, kept, safe', [
    ([(5.0, 0.0), (9.0, 50.0), (7.0, 0.5)], 90, True),   # Best safe reward, not the last.
    ([(5.0, 3.0), (9.0, 2.5), (7.0, 4.0)], 60, False),   # None within kappa: the lowest cost.
])
def test_collect_keeps_the_best_safe_expert_and_warns_when_unsafe(
    tmp_path, capsys, monkeypatch, validations, kept, safe):
  from gold_jax import protocol
  final = (6.0, 0.5) if safe else (6.0, 3.0)
  fake, fake_set, calls = _scripted_evaluate(validations, final)
  monkeypatch.setattr(collect, 'evaluate', fake)
  monkeypatch.setattr(collect, 'evaluate_set', fake_set)
  config = _tiny(expert_steps=90, eval_every=30, cost_limit=1.0, eval_episodes=4,
                 final_episodes=12)
  workdir = str(tmp_path / 'expert')
  summary = collect.run(config, workdir)
  out = capsys.readouterr().out
  assert calls == [('validation/', protocol.validation_seed(0), 4)] * 3 + [
      ('expert_', protocol.evaluation_seed(0), 12)]
  assert summary['expert_checkpoint_step'] == kept
  assert summary['expert_validation_reward_mean'] == validations[kept // 30 - 1][0]
  assert (summary['expert_reward_mean'], summary['expert_cost_mean']) == final
  assert summary['expert_safe'] is safe
  assert ('WARNING' in out) is (not safe)
  with CheckpointManager(collect.best_expert_dir(workdir)) as manager:
    assert manager.all_steps() == [kept]
    extra = manager.read_metadata()['extra']
  assert extra['validation']['validation/reward_mean'] == validations[kept // 30 - 1][0]
  saved = json.load(open(os.path.join(workdir, 'summary.json')))
  assert saved['expert_safe'] is safe and saved['expert_checkpoint_step'] == kept
