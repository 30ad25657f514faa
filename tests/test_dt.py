"""Tests for the GPT, the Decision Transformer learner and its rolling acting context."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gold_jax.agents import dt
from gold_jax.data import segments
from gold_jax.data.trajectories import TrajectoryDataset
from gold_jax.networks.gpt import DecisionTransformer, TransformerConfig

OBS_DIM, ACT_DIM, K = 2, 1, 5
TINY = dt.Config(embed_dim=32, num_layers=1, num_heads=1, mlp_dim=64, context_len=K,
                 dropout_rate=0.1, warmup_steps=10, learning_rate=1e-3, max_timestep=16)
BATCH, NUM_BATCHES = 16, 4  # One (k, batch) shape everywhere: update_n compiles once.


def conditioned_dataset(num_episodes=16, length=10, seed=0):
  """Even episodes act +0.5 and earn 1 per step (return 10); odd ones act -0.5 and earn 0."""
  rng = np.random.default_rng(seed)
  episodes = []
  for i in range(num_episodes):
    good = i % 2 == 0
    episodes.append(dict(
        observations=rng.normal(size=(length + 1, OBS_DIM)).astype(np.float32),
        actions=np.full((length, ACT_DIM), 0.5 if good else -0.5, np.float32),
        rewards=np.full(length, 1.0 if good else 0.0, np.float32),
        costs=np.zeros(length, np.float32)))
  return TrajectoryDataset.from_episodes(episodes)


@pytest.fixture(scope='module')
def trained():
  dataset = conditioned_dataset()
  data = segments.make_segment_data(dataset, K, TINY.return_scale, TINY.cost_scale)
  state = dt.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, TINY, *dataset.obs_stats())
  for i in range(100):
    state, metrics = dt.update_n(state, segments.sample_segments(
        data, jax.random.PRNGKey(i), BATCH, num_batches=NUM_BATCHES))
  return dataset, data, state, metrics


def random_window(key, batch=3, steps=K, obs_dim=OBS_DIM, act_dim=ACT_DIM):
  keys = jax.random.split(key, 4)
  return segments.Segment(
      obs=jax.random.normal(keys[0], (batch, steps, obs_dim)),
      action=jax.random.uniform(keys[1], (batch, steps, act_dim), minval=-1, maxval=1),
      rtg=jax.random.normal(keys[2], (batch, steps)),
      ctg=jax.random.uniform(keys[3], (batch, steps)),
      timestep=jnp.broadcast_to(jnp.arange(steps, dtype=jnp.int32), (batch, steps)),
      mask=jnp.ones((batch, steps)))


def apply_model(config, window):
  model = DecisionTransformer(config)
  params = model.init(jax.random.PRNGKey(0), *window)
  return lambda w: model.apply(params, *w)


@pytest.mark.parametrize('use_cost_token', [False, True])
def test_gpt_shapes_and_causality(use_cost_token):
  config = TransformerConfig(act_dim=3, embed_dim=16, num_layers=2, num_heads=2, mlp_dim=32,
                             dropout_rate=0.0, use_cost_token=use_cost_token)
  window = random_window(jax.random.PRNGKey(0), obs_dim=4, act_dim=3)
  apply = jax.jit(apply_model(config, window))
  out = apply(window)
  chex.assert_shape(out, (3, K, 3))
  chex.assert_tree_all_finite(out)
  assert jnp.all(jnp.abs(out) <= 1.0)
  # The action at step t sees s_t but not a_t: changing a_3 leaves steps <= 3 unchanged.
  changed = apply(window._replace(action=window.action.at[:, 3].add(1.0)))
  np.testing.assert_allclose(changed[:, :4], out[:, :4], atol=1e-6)
  assert not np.allclose(changed[:, 4], out[:, 4])
  changed = apply(window._replace(obs=window.obs.at[:, 2].add(1.0)))
  np.testing.assert_allclose(changed[:, :2], out[:, :2], atol=1e-6)
  assert not np.allclose(changed[:, 2], out[:, 2])
  # The cost-to-go matters only with the cost token.
  changed = apply(window._replace(ctg=window.ctg + 1.0))
  assert np.allclose(changed, out, atol=1e-6) != use_cost_token


def test_gpt_ignores_padded_steps():
  config = TransformerConfig(act_dim=ACT_DIM, embed_dim=16, num_layers=2, mlp_dim=32,
                             dropout_rate=0.0)
  window = random_window(jax.random.PRNGKey(1))._replace(
      mask=jnp.array([[0, 0, 1, 1, 1]] * 3, jnp.float32))
  apply = jax.jit(apply_model(config, window))
  out = apply(window)
  noisy = window._replace(
      obs=window.obs.at[:, :2].set(100.0), rtg=window.rtg.at[:, :2].set(-7.0),
      action=window.action.at[:, :2].set(0.9))
  np.testing.assert_allclose(apply(noisy)[:, 2:], out[:, 2:], atol=1e-5)


def test_action_loss_by_hand():
  predicted = jnp.array([[[0.0, 1.0], [1.0, 1.0]], [[0.5, 0.5], [2.0, 0.0]]])
  target = jnp.zeros((2, 2, 2))
  mask = jnp.array([[0.0, 1.0], [1.0, 0.0]])
  # Valid squared errors: (1 + 1) and (0.25 + 0.25), over 2 valid steps x 2 action dims.
  np.testing.assert_allclose(dt.action_loss(predicted, target, mask), 2.5 / 4, rtol=1e-6)


def test_learning_rate_warmup():
  schedule = dt.learning_rate_schedule(dt.Config(learning_rate=1e-4, warmup_steps=10000))
  np.testing.assert_allclose([schedule(0), schedule(4999), schedule(9999), schedule(50000)],
                             [1e-8, 5e-5, 1e-4, 1e-4], rtol=1e-3)


def test_default_config_size():
  state = jax.eval_shape(lambda: dt.init(jax.random.PRNGKey(0), 60, 2))
  # 128k for the 1000-step timestep embedding, ~0.6M for the 3 blocks and the token embeddings.
  assert dt.num_params(state.params) == 732034
  assert dt.Config().transformer(2).tokens_per_step == 3


def test_update_shapes_and_no_recompilation():
  dataset = conditioned_dataset(num_episodes=4)
  data = segments.make_segment_data(dataset, K, TINY.return_scale, TINY.cost_scale)
  state = dt.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, TINY)
  seg = segments.sample_segments(data, jax.random.PRNGKey(0), BATCH)
  state, metrics = dt.update(state, seg)
  assert set(metrics) == {'loss/action', 'training/grad_norm', 'training/learning_rate'}
  chex.assert_tree_all_finite(metrics)
  state, metrics = dt.update_n(
      state, segments.sample_segments(data, jax.random.PRNGKey(1), BATCH, NUM_BATCHES))
  updates, scans = dt.update._cache_size(), dt.update_n._cache_size()
  for i in range(3):
    state, _ = dt.update(state, segments.sample_segments(data, jax.random.PRNGKey(i), BATCH))
    state, metrics = dt.update_n(
        state, segments.sample_segments(data, jax.random.PRNGKey(i), BATCH, NUM_BATCHES))
  assert int(state.step) == 4 * (1 + NUM_BATCHES)
  chex.assert_shape(list(metrics.values()), ())
  chex.assert_tree_all_finite(metrics)
  assert dt.update._cache_size() == updates and dt.update_n._cache_size() == scans
  with pytest.raises(ValueError, match="segment field 'obs'"):
    dt.update(state, seg._replace(obs=jnp.zeros((BATCH, K, OBS_DIM + 1))))


def test_update_n_equals_repeated_update():
  """Same dropout masks too: the dropout key of step i is fold_in(rng, i)."""
  dataset = conditioned_dataset(num_episodes=4)
  data = segments.make_segment_data(dataset, K, TINY.return_scale, TINY.cost_scale)
  stacked = segments.sample_segments(data, jax.random.PRNGKey(3), BATCH, NUM_BATCHES)
  one = dt.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, TINY)
  for i in range(NUM_BATCHES):
    one, _ = dt.update(one, jax.tree.map(lambda x: x[i], stacked))
  fused, _ = dt.update_n(dt.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, TINY), stacked)
  chex.assert_trees_all_close(one.params, fused.params, atol=1e-5)


def test_imitates_demonstrations(trained):
  dataset, data, state, metrics = trained
  assert float(metrics['loss/action']) < 1e-3
  seg = segments.sample_segments(data, jax.random.PRNGKey(7), batch_size=256)
  predicted = dt.predict_actions(state, state.params, seg)
  assert float(dt.action_loss(predicted, seg.action, seg.mask)) < 1e-3


def run_episode(state, target_return, length=10, seed=0):
  """Acts through the context in a toy env that pays 1 for a positive action."""
  rng = np.random.default_rng(seed)
  ctx = dt.init_context(state, target_return)
  actions = []
  for _ in range(length):
    action, ctx = dt.act_context(state, ctx, rng.normal(size=OBS_DIM))  # float64 obs on purpose
    chex.assert_shape(action, (ACT_DIM,))
    reward = 1.0 if float(action[0]) > 0 else 0.0
    ctx = dt.observe(ctx, np.asarray(action), reward, np.float64(0.0))
    actions.append(float(action[0]))
  return np.array(actions), ctx


def test_follows_commanded_return_without_recompiling(trained):
  _, _, state, _ = trained
  act_cache, observe_cache = dt._act_context._cache_size(), dt._observe._cache_size()
  high, ctx = run_episode(state, target_return=10.0)
  # At most one compilation for the whole first episode (none if an earlier test compiled it).
  assert dt._act_context._cache_size() <= act_cache + 1
  assert dt._observe._cache_size() <= observe_cache + 1
  act_cache, observe_cache = dt._act_context._cache_size(), dt._observe._cache_size()
  low, _ = run_episode(state, target_return=0.0, seed=1)
  high_again, _ = run_episode(state, target_return=10.0, seed=2)
  assert np.all(high > 0.3) and np.all(high_again > 0.3), (high, high_again)
  assert np.all(low < -0.3), low
  # One compiled program for every step of every episode.
  assert dt._act_context._cache_size() == act_cache
  assert dt._observe._cache_size() == observe_cache
  # All 10 rewards were earned: the return-to-go went from 10 to 0 (scaled by 10).
  np.testing.assert_allclose(ctx.rtg, [0.0], atol=1e-6)
  np.testing.assert_array_equal(ctx.timestep, [10])


def test_context_matches_training_windows(trained):
  """Replaying an episode, the context equals the training window ending at each step."""
  dataset, data, state, _ = trained
  episode = dataset.episodes()[1]
  ctx = dt.init_context(state, dataset.episode_returns()[1])
  for t in range(len(episode['rewards'])):
    action, ctx = dt.act_context(state, ctx, episode['observations'][t])
    window = jax.tree.map(lambda x: x[1, t:t + K], data.padded)
    for name in ('obs', 'rtg', 'ctg', 'timestep', 'mask'):
      np.testing.assert_allclose(getattr(ctx.window, name)[0], getattr(window, name),
                                 atol=1e-6, err_msg=name)
    # The current action is not yet known; earlier ones are the ones taken.
    np.testing.assert_allclose(ctx.window.action[0, :-1], window.action[:-1])
    expected = dt.predict_actions(state, state.params, jax.tree.map(lambda x: x[None], window))
    np.testing.assert_allclose(action, expected[0, -1], atol=1e-5)
    ctx = dt.observe(ctx, episode['actions'][t], episode['rewards'][t], episode['costs'][t])


def test_batched_context_and_reset(trained):
  _, _, state, _ = trained
  ctx = dt.init_context(state, jnp.array([10.0, 0.0, 10.0]), n=3)
  obs = np.random.default_rng(0).normal(size=(3, OBS_DIM)).astype(np.float32)
  action, ctx = dt.act_context(state, ctx, obs)
  chex.assert_shape(action, (3, ACT_DIM))
  assert action[0, 0] > 0.3 and action[1, 0] < -0.3 and action[2, 0] > 0.3
  ctx = dt.observe(ctx, action, np.array([1.0, 0.0, 1.0]), np.zeros(3))
  np.testing.assert_allclose(ctx.rtg, [0.9, 0.0, 0.9], atol=1e-6)
  ctx = dt.reset_context(state, ctx, np.array([False, True, False]), 10.0)
  np.testing.assert_allclose(ctx.rtg, [0.9, 1.0, 0.9], atol=1e-6)
  np.testing.assert_array_equal(ctx.timestep, [1, 0, 1])
  np.testing.assert_array_equal(ctx.window.mask[:, -1], [1, 0, 1])
  np.testing.assert_array_equal(ctx.window.obs[1], 0.0)


@pytest.mark.parametrize('cost_token', [False, True])
def test_pruned_outputs_equal_the_full_transformer(cost_token):
  """'all' (last block at observation tokens only) and 'last' (acting: last step, no last
  action token) give the actions of the full computation at every token ('reference')."""
  config = dt.Config(embed_dim=16, num_layers=2, mlp_dim=32, context_len=K,
                     use_cost_token=cost_token, max_timestep=16)
  state = dt.init(jax.random.PRNGKey(1), 7, 3, config)
  model = DecisionTransformer(config.transformer(3))
  rng = np.random.default_rng(0)
  batch = 4
  f32 = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  mask = (np.arange(K)[None] >= np.array([[0], [1], [3], [K - 1]])).astype(np.float32)
  args = (f32(batch, K, 7), f32(batch, K, 3), f32(batch, K), f32(batch, K),
          jnp.broadcast_to(jnp.arange(K), (batch, K)), jnp.asarray(mask))
  apply = lambda outputs: model.apply({'params': state.params}, *args, outputs=outputs)
  reference, all_steps, last = apply('reference'), apply('all'), apply('last')
  chex.assert_shape(all_steps, (batch, K, 3))
  chex.assert_shape(last, (batch, 1, 3))
  np.testing.assert_allclose(all_steps, reference, atol=1e-5)
  np.testing.assert_allclose(last, reference[:, -1:], atol=1e-5)
  # The last step's action token is unknown while acting: 'last' must not read it.
  changed = (args[0], args[1].at[:, -1].set(9.0)) + args[2:]
  np.testing.assert_allclose(model.apply({'params': state.params}, *changed, outputs='last'),
                             last, atol=1e-6)
  with pytest.raises(ValueError, match='outputs'):
    apply('middle')


def test_mixed_precision_decision_transformer_learns_and_acts():
  config = dataclasses.replace(TINY, matmul_dtype='bfloat16')
  dataset = conditioned_dataset()
  data = segments.make_segment_data(dataset, K, config.return_scale, config.cost_scale)
  state = dt.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, config, *dataset.obs_stats())
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
  for i in range(100):
    state, metrics = dt.update_n(state, segments.sample_segments(
        data, jax.random.PRNGKey(i), BATCH, num_batches=NUM_BATCHES))
  assert float(metrics['loss/action']) < 5e-3
  ctx = dt.init_context(state, 10.0)
  action, ctx = dt.act_context(state, ctx, np.zeros(OBS_DIM, np.float32))
  assert action.dtype == jnp.float32 and float(action[0]) > 0.3  # The return-10 demonstrations.
