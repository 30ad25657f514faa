"""Tests of SAC-Lagrangian: losses, shapes, compilation, the multiplier, and learning Pendulum."""

import dataclasses

import chex
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learner_checks

from gold_jax import distributions
from gold_jax.agents import lagrange, sac
from gold_jax.networks.policies import GaussianPolicy
from gold_jax.networks.values import QEnsemble
from gold_jax.types import Transition

OBS_DIM, ACT_DIM, BATCH, K = 5, 2, 16, 3
CONFIGS = {
    'lagrangian': sac.Config(
        hidden_dims=(32, 32), discount=0.5, tau=0.05, critic_lr=3e-3, cost_limit=5.0,
        multiplier=lagrange.Config(rule='pid', value=0.5, cost_target=0.8, kp=0.1, ki=0.05,
                                   kd=0.0)),
    'fixed': sac.Config(hidden_dims=(32, 32), multiplier=lagrange.Config(rule='fixed', value=2.0)),
}
KEYS = {'loss/critic', 'loss/cost_critic', 'loss/actor', 'loss/alpha', 'training/q_mean',
        'training/qc_mean', 'training/policy_qc_mean', 'training/alpha', 'training/entropy',
        'training/lambda'}


def random_batch(seed, n=BATCH, k=None):
  return learner_checks.random_batch(seed, OBS_DIM, ACT_DIM, n, k)


class LossTest(chex.TestCase):

  @chex.all_variants(with_pmap=False)
  def test_q_loss_hand_computed(self):
    q = jnp.array([[1.0, 2.0], [0.0, 4.0]])
    # Head 0: mean([0, 1]) = 0.5; head 1: mean([1, 1]) = 1 -> 1.5.
    np.testing.assert_allclose(self.variant(sac.q_loss)(q, jnp.array([1.0, 3.0])), 1.5)

  @chex.all_variants(with_pmap=False)
  def test_soft_td_target_hand_computed(self):
    fn = self.variant(lambda *x: sac.soft_td_target(*x, alpha=0.5, discount=0.9))
    target_q, target_cost_q = fn(
        jnp.array([1.0, 1.0]), jnp.array([0.0, 1.0]), jnp.array([0.0, 1.0]),
        jnp.array([10.0, 10.0]), jnp.array([4.0, 4.0]), jnp.array([-2.0, -2.0]))
    # y_r = 1 + 0.9 (10 + 0.5 * 2) = 10.9 (not terminal), 1 (terminal);
    # y_c = 0 + 0.9 * 4 = 3.6, 1.
    np.testing.assert_allclose(target_q, [10.9, 1.0], rtol=1e-6)
    np.testing.assert_allclose(target_cost_q, [3.6, 1.0], rtol=1e-6)

  @chex.all_variants(with_pmap=False)
  def test_actor_and_temperature_losses_hand_computed(self):
    log_prob, q = jnp.array([-1.0, 0.5]), jnp.array([2.0, -1.0])
    # mean(0.2 * [-1, 0.5] - [2, -1]) = mean([-2.2, 1.1]) = -0.55.
    np.testing.assert_allclose(self.variant(sac.actor_loss)(log_prob, q, 0.2), -0.55, rtol=1e-6)
    # α (H − H̄) with H = -mean(log π) = 0.25 and H̄ = -2: 0.5 * 2.25.
    loss = self.variant(lambda a, lp: sac.temperature_loss(a, lp, -2.0))(0.5, log_prob)
    np.testing.assert_allclose(loss, 1.125, rtol=1e-6)


def test_init_validates():
  with pytest.raises(ValueError, match='lambda'):
    sac.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, sac.Config(multiplier={'value': -0.1}))
  with pytest.raises(ValueError, match='cost_target'):
    sac.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, sac.Config(multiplier={'cost_target': 1.5}))
  with pytest.raises(ValueError, match='lambda rule'):
    sac.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, sac.Config(multiplier={'rule': 'sgd'}))
  with pytest.raises(ValueError, match='start_step'):
    sac.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, sac.Config(multiplier={'start_step': -1}))
  # A dict fills in over the learner's own default multiplier (SAC: adapted by 'lagrange').
  assert sac.Config(multiplier={'value': 0.3}).multiplier == lagrange.Config(rule='lagrange',
                                                                              value=0.3)


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_shapes_dtypes_and_finite(name):
  state = sac.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, CONFIGS[name])
  state, metrics = sac.update(state, random_batch(0))
  state, metrics_n = sac.update_n(state, random_batch(1, k=K))
  for m in (metrics, metrics_n):
    assert set(m) == KEYS
    for v in m.values():
      chex.assert_shape(v, ())
      chex.assert_type(v, jnp.float32)
    chex.assert_tree_all_finite(m)
  chex.assert_tree_all_finite(state)
  assert int(state.step) == 1 + K
  chex.assert_shape(state.log_alpha, ())
  chex.assert_shape(state.multiplier.value, ())
  chex.assert_trees_all_equal_shapes(state.critic_params['reward'], state.critic_params['cost'])
  chex.assert_trees_all_equal_shapes(state.critic_params, state.target_critic_params)
  for obs, shape in ((jnp.zeros(OBS_DIM), (ACT_DIM,)), (jnp.zeros((7, OBS_DIM)), (7, ACT_DIM))):
    for deterministic in (True, False):
      action = sac.act(state, obs, jax.random.PRNGKey(1), deterministic=deterministic)
      chex.assert_shape(action, shape)
      chex.assert_type(action, jnp.float32)
      assert np.all(np.abs(np.asarray(action)) <= 1.0)


def test_wrong_batch_rejected_naming_field():
  state = sac.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, CONFIGS['fixed'])
  batch = random_batch(0)
  with pytest.raises(ValueError, match="'terminated'"):
    sac.update(state, batch._replace(terminated=batch.terminated[:-1]))
  with pytest.raises(ValueError, match="'obs'"):
    sac.update_n(state, random_batch(0, k=K)._replace(obs=jnp.zeros((K, BATCH, OBS_DIM + 1))))


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_no_recompilation(name):
  learner_checks.assert_no_recompilation(sac, CONFIGS[name], OBS_DIM, ACT_DIM, BATCH, K)


def test_same_key_same_result():
  learner_checks.assert_same_key_same_result(sac, CONFIGS['lagrangian'], OBS_DIM, ACT_DIM, BATCH, K)


def test_fixed_lambda_actor_loss_hand_check():
  config = CONFIGS['fixed']
  state = sac.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, config)
  batch = random_batch(2)
  new_state, metrics = sac.update(state, batch)
  np.testing.assert_allclose(metrics['training/lambda'], 2.0)
  np.testing.assert_allclose(new_state.multiplier.value, 2.0)
  # Recompute the actor objective α log π(ã|s) − (min Q_r − λ max(0, mean Q_c)) with the same sample.
  _, _, k_actor = jax.random.split(state.rng, 3)
  mean, log_std = GaussianPolicy((32, 32), ACT_DIM).apply({'params': state.actor_params}, batch.obs)
  action, log_prob = distributions.tanh_gaussian_sample(k_actor, mean, log_std)
  critic = QEnsemble((32, 32))
  q = critic.apply({'params': new_state.critic_params['reward']}, batch.obs, action).min(0)
  cost_q = critic.apply({'params': new_state.critic_params['cost']}, batch.obs, action).mean(0)
  expected = np.mean(1.0 * log_prob - (q - 2.0 * np.maximum(cost_q, 0.0)))  # init_alpha = 1.
  np.testing.assert_allclose(metrics['loss/actor'], expected, rtol=1e-4, atol=1e-6)


def test_cost_target_never_bootstraps_a_negative_cost_value():
  zeros = jnp.zeros(3)
  _, y_c = sac.soft_td_target(zeros, jnp.array([0.0, 1.0, 0.0]), zeros,
                              zeros, jnp.array([-5.0, -5.0, 2.0]), zeros, 1.0, 0.9)
  np.testing.assert_allclose(y_c, [0.0, 1.0, 1.8])


def test_lambda_follows_measured_episode_cost():
  # The target is cost_target · κ = 0.8 · 5 = 4 per episode.
  state = sac.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, CONFIGS['lagrangian'])
  assert sac.adapts_lambda(state.config) and not sac.adapts_lambda(CONFIGS['fixed'])
  lam = [float(state.multiplier.value)]
  for _ in range(20):
    state, metrics = sac.update_lambda(state, jnp.float32(10.0))
    lam.append(float(state.multiplier.value))
  # The error 10 − 4 = 6 is clipped to error_clip · κ = 5.
  np.testing.assert_allclose(metrics['training/lambda_cost_error'], 5.0)
  assert np.all(np.diff(lam) >= 0) and lam[-1] > 5.0  # Up from 0.5.
  for _ in range(200):
    state, _ = sac.update_lambda(state, jnp.float32(1.0))
  assert float(state.multiplier.value) == 0.0
  # Gradient updates leave λ where the measured costs put it.
  state, metrics = sac.update_n(state, random_batch(0, k=K))
  assert float(state.multiplier.value) == 0.0 and float(metrics['training/lambda']) == 0.0


# ---------------------------------------------------------------------------- learning


def _pendulum_return(state, env, n_episodes=3):
  total = 0.0
  for i in range(n_episodes):
    obs, _ = env.reset(seed=100 + i)
    done = False
    while not done:
      action = sac.act(state, jnp.asarray(obs), jax.random.PRNGKey(0), deterministic=True)
      obs, reward, terminated, truncated, _ = env.step(2.0 * np.asarray(action))
      total += reward
      done = terminated or truncated
  return total / n_episodes


def test_sac_improves_on_pendulum():
  """5000 environment steps, one update per step in fused chunks of 50 (≈ 20 s of CPU)."""
  steps, warmup, chunk, batch_size = 5000, 500, 50, 128
  config = sac.Config(hidden_dims=(64, 64), actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3,
                      cost_limit=1.0)
  env, eval_env = gym.make('Pendulum-v1'), gym.make('Pendulum-v1')
  state = sac.init(jax.random.PRNGKey(0), 3, 1, config)
  initial = _pendulum_return(state, eval_env)
  rng = np.random.default_rng(0)
  key = jax.random.PRNGKey(1)
  data = Transition(*(np.zeros((steps,) + shape, np.float32)
                      for shape in ((3,), (1,), (), (), (3,), ())))
  obs, _ = env.reset(seed=0)
  for t in range(steps):
    if t < warmup:
      action = rng.uniform(-1, 1, 1).astype(np.float32)
    else:
      key, k = jax.random.split(key)
      action = np.asarray(sac.act(state, jnp.asarray(obs), k))
    next_obs, reward, terminated, truncated, _ = env.step(2.0 * action)
    for field, value in zip(data, (obs, action, reward / 10.0, 0.0, next_obs, terminated)):
      field[t] = value
    obs = env.reset()[0] if terminated or truncated else next_obs
    if t >= warmup and (t + 1) % chunk == 0:
      idx = rng.integers(0, t + 1, (chunk, batch_size))
      state, metrics = sac.update_n(state, jax.tree.map(lambda x: jnp.asarray(x[idx]), data))
  chex.assert_tree_all_finite(metrics)
  final = _pendulum_return(state, eval_env)
  print(f'Pendulum return: initial {initial:.0f} final {final:.0f}')
  assert float(metrics['training/lambda']) == 0.0  # No cost, so the constraint is slack.
  assert final > initial + 500.0
  assert final > -700.0


def test_cost_twin_combines_pessimistically_or_by_mean():
  q = jnp.array([[1.0, -2.0], [3.0, 0.0]])
  np.testing.assert_allclose(sac._combine_cost(q, 'max'), [3.0, 0.0])
  np.testing.assert_allclose(sac._combine_cost(q, 'mean'), [2.0, -1.0])
  with pytest.raises(ValueError, match='cost_twin'):
    sac.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, sac.Config(cost_twin='min'))
