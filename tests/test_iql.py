"""Tests of IQL: losses against hand-computed values, shapes, compilation, shaping, learning."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learner_checks
from absl.testing import parameterized

from gold_jax.agents import iql, iql_losses, lagrange
from gold_jax.networks.values import QEnsemble, StateValue
from gold_jax.types import Transition

OBS_DIM, ACT_DIM, BATCH = 5, 2, 16
SMALL = iql.Config(hidden_dims=(32, 32))


def random_batch(seed, n=BATCH, k=None, cost_p=0.3):
  return learner_checks.random_batch(seed, OBS_DIM, ACT_DIM, n, k, cost_p)


class LossTest(chex.TestCase):

  @chex.all_variants(with_pmap=False)
  def test_value_loss_hand_computed(self):
    q = jnp.array([1.0, 0.0, 2.0, 3.0])
    v = jnp.array([0.0, 1.0, 2.0, 1.0])
    # u = q - v = [1, -1, 0, 2]; weights τ for u > 0 and 1 - τ otherwise (τ = 0.7):
    # [0.7 * 1, 0.3 * 1, 0, 0.7 * 4] -> mean 3.8 / 4.
    loss = self.variant(lambda q, v: iql_losses.value_loss(q, v, 0.7))(q, v)
    np.testing.assert_allclose(loss, 0.95, rtol=1e-6)
    # τ = 0.5 is half the mean squared error.
    loss = self.variant(lambda q, v: iql_losses.value_loss(q, v, 0.5))(q, v)
    np.testing.assert_allclose(loss, 0.5 * 6.0 / 4, rtol=1e-6)

  @chex.all_variants(with_pmap=False)
  def test_value_loss_gradient_is_asymmetric(self):
    grad = self.variant(jax.grad(lambda v: iql_losses.value_loss(jnp.zeros(2), v, 0.9)))
    # d/dv of mean(w u^2), u = -v: v = [-1, 1] -> [-2 * 0.9 * 1 / 2, 2 * 0.1 * 1 / 2].
    np.testing.assert_allclose(grad(jnp.array([-1.0, 1.0])), [-0.9, 0.1], rtol=1e-6)

  @chex.all_variants(with_pmap=False)
  def test_awr_actor_loss_hand_computed(self):
    log_prob = jnp.array([-1.0, -2.0, -0.5])
    advantage = jnp.array([0.0, 1.0, -10.0])
    # β = 2: weights [1, min(e^2, 5) = 5, e^-20] -> -mean([-1, -10, -0.5 e^-20]).
    loss = self.variant(lambda lp, a: iql_losses.awr_actor_loss(lp, a, 2.0, 5.0))(
        log_prob, advantage)
    np.testing.assert_allclose(loss, (1.0 + 10.0 + 0.5 * np.exp(-20.0)) / 3, rtol=1e-6)

  @chex.all_variants(with_pmap=False)
  def test_td_target_and_shaping_hand_computed(self):
    target = self.variant(lambda r, d, v: iql_losses.td_target(r, d, v, 0.9))(
        jnp.array([1.0, 2.0]), jnp.array([0.0, 1.0]), jnp.array([10.0, 10.0]))
    np.testing.assert_allclose(target, [10.0, 2.0], rtol=1e-6)
    shaped = self.variant(iql_losses.shaped_reward)(
        jnp.array([1.0, 1.0, -2.0]), jnp.array([0.0, 1.0, 2.0]), jnp.float32(0.5))
    np.testing.assert_allclose(shaped, [1.0, 0.5, -3.0])


def test_config_validation_and_expectile_defaults():
  with pytest.raises(ValueError, match='lambda'):
    iql.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, iql.Config(multiplier={'value': -1.0}))
  with pytest.raises(ValueError, match='lambda rule'):
    iql.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, iql.Config(multiplier={'rule': 'sgd'}))
  with pytest.raises(ValueError, match='actor_loss'):
    iql.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, iql.Config(actor_loss='td3'))
  with pytest.raises(ValueError, match='expectile'):
    iql.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, iql.Config(expectile=1.0))
  assert iql.expectile(iql.Config()) == 0.7
  assert iql.expectile(iql.Config(actor_loss='sac')) == 0.8
  assert iql.expectile(iql.Config(actor_loss='sac', expectile=0.9)) == 0.9


# Two configurations cover every branch; the tests share them (and their batch shapes) so that
# each learner is compiled once per configuration.
CONFIGS = {
    'sac': dataclasses.replace(SMALL, actor_loss='sac'),
    # Adaptive λ aiming at an episode cost of κ = 5.
    'awr_cost': dataclasses.replace(
        SMALL, multiplier=lagrange.Config(rule='lagrange', value=0.5, lr=0.1), discount=0.5,
        cost_limit=5.0),
}
K = 3
COMMON_KEYS = {'loss/critic', 'loss/value', 'loss/actor', 'training/q_mean', 'training/v_mean',
               'training/adv_mean', 'training/lambda', 'training/shaped_reward_mean'}


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_shapes_dtypes_and_finite(name):
  config = CONFIGS[name]
  state = iql.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, config)
  state, metrics = iql.update(state, random_batch(0))
  state, metrics_n = iql.update_n(state, random_batch(1, k=K))
  for m in (metrics, metrics_n):
    assert COMMON_KEYS <= set(m)
    assert set(m) == set(metrics)
    if config.actor_loss == 'sac':
      assert {'loss/alpha', 'training/alpha', 'training/entropy'} <= set(m)
    for v in m.values():
      chex.assert_shape(v, ())
      chex.assert_type(v, jnp.float32)
    chex.assert_tree_all_finite(m)
  chex.assert_tree_all_finite(state)
  assert int(state.step) == 1 + K
  chex.assert_shape(state.critic.v_params['MLP_0']['Dense_0']['kernel'], (OBS_DIM, 32))
  chex.assert_shape(state.critic.q_params['VmapStateActionValue_0']['MLP_0']['Dense_0']['kernel'],
                    (2, OBS_DIM + ACT_DIM, 32))
  assert (state.multiplier is not None) == (config.multiplier.rule != 'fixed')
  assert (state.log_alpha is not None) == (config.actor_loss == 'sac')
  for obs, shape in ((jnp.zeros(OBS_DIM), (ACT_DIM,)), (jnp.zeros((7, OBS_DIM)), (7, ACT_DIM))):
    for deterministic in (True, False):
      action = iql.act(state, obs, jax.random.PRNGKey(1), deterministic=deterministic)
      chex.assert_shape(action, shape)
      chex.assert_type(action, jnp.float32)
      assert np.all(np.abs(np.asarray(action)) <= 1.0)
  # Deterministic acting is repeatable; sampling depends on the key.
  obs = jnp.ones((7, OBS_DIM))
  chex.assert_trees_all_equal(iql.act(state, obs, jax.random.PRNGKey(1), deterministic=True),
                              iql.act(state, obs, jax.random.PRNGKey(2), deterministic=True))
  assert not np.allclose(iql.act(state, obs, jax.random.PRNGKey(1)),
                         iql.act(state, obs, jax.random.PRNGKey(2)))


def test_wrong_batch_rejected_naming_field():
  state = iql.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, CONFIGS['sac'])
  batch = random_batch(0)
  with pytest.raises(ValueError, match="'reward'"):
    iql.update(state, batch._replace(reward=batch.reward[:, None]))
  with pytest.raises(ValueError, match="'next_obs'"):
    iql.update(state, batch._replace(next_obs=batch.next_obs[:, :-1]))
  with pytest.raises(TypeError, match="'cost'"):
    iql.update(state, batch._replace(cost=batch.cost.astype(jnp.int32)))
  with pytest.raises(ValueError, match="'action'"):
    iql.update_n(state, random_batch(0, k=K)._replace(action=jnp.zeros((K, BATCH, 3))))


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_no_recompilation(name):
  learner_checks.assert_no_recompilation(iql, CONFIGS[name], OBS_DIM, ACT_DIM, BATCH, K)


def test_same_key_same_result():
  learner_checks.assert_same_key_same_result(iql, CONFIGS['sac'], OBS_DIM, ACT_DIM, BATCH, K)


@pytest.mark.parametrize('lam', [0.0, 2.0])
def test_reward_shaping_hand_check(lam):
  config = CONFIGS['awr_cost']
  state = iql.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, config)
  state = state.replace(multiplier=state.multiplier.replace(value=jnp.float32(lam)))
  batch = random_batch(3, cost_p=0.5)
  new_state, metrics = iql.update(state, batch)
  # The Q step regresses the old Q toward r − λ c + γ (1 − d) V(s') with the V of this step.
  q_net, v_net = QEnsemble((32, 32)), StateValue((32, 32))
  next_v = v_net.apply({'params': new_state.critic.v_params}, batch.next_obs)
  target = batch.reward - lam * batch.cost + 0.5 * (1.0 - batch.terminated) * next_v
  q = q_net.apply({'params': state.critic.q_params}, batch.obs, batch.action)
  expected = np.sum(np.mean((np.asarray(q) - np.asarray(target))**2, axis=1))
  np.testing.assert_allclose(metrics['loss/critic'], expected, rtol=1e-5)
  np.testing.assert_allclose(metrics['training/shaped_reward_mean'],
                             np.mean(batch.reward - lam * batch.cost), rtol=1e-5)
  np.testing.assert_allclose(metrics['training/lambda'], lam)


def test_fixed_lambda_is_the_multiplier_value():
  state = iql.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, CONFIGS['sac'])
  state, metrics = iql.update(state, random_batch(0))
  assert state.multiplier is None
  np.testing.assert_allclose(metrics['training/lambda'], 1.0)  # The default λ.


def test_adaptive_lambda_follows_the_students_episode_cost():
  state = iql.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, CONFIGS['awr_cost'])
  assert iql.adapts_lambda(state.config) and not iql.adapts_lambda(CONFIGS['sac'])
  lam = [float(iql.current_lambda(state))]
  for _ in range(30):  # Above κ = 5: λ rises by about its lr per step (Adam).
    state, metrics = iql.update_lambda(state, jnp.float32(9.0))
    lam.append(float(iql.current_lambda(state)))
  np.testing.assert_allclose(metrics['training/lambda_cost_error'], 4.0)
  assert np.all(np.diff(lam) > 0) and lam[-1] > 2.5
  for _ in range(100):  # Below κ: down to exactly 0.
    state, _ = iql.update_lambda(state, jnp.float32(2.0))
  assert float(iql.current_lambda(state)) == 0.0
  # Gradient updates shape the reward with λ but never move it.
  state, metrics = iql.update_n(state, random_batch(0, k=K))
  assert float(iql.current_lambda(state)) == 0.0 and float(metrics['training/lambda']) == 0.0


# ---------------------------------------------------------------------------- learning
# A 2-D point mass: state (p, g), action a ∈ [-1, 1]², p' = clip(p + 0.2 a), reward −|p' − g|,
# 20 steps. The dataset mixes 30% near-expert steps with 70% uniform random steps, so behaviour
# cloning moves at about 30% of the expert's speed while IQL can pick the expert actions.

HORIZON, SPEED = 20, 0.2


def _expert(p, g):
  return np.clip((g - p) / SPEED, -1.0, 1.0)


def _step(p, a, g):
  p = np.clip(p + SPEED * np.clip(a, -1.0, 1.0), -1.0, 1.0)
  return p, -np.linalg.norm(p - g, axis=-1)


def _point_mass_dataset(n_episodes=500, p_expert=0.3, seed=0):
  rng = np.random.default_rng(seed)
  p, g = rng.uniform(-1, 1, (2, n_episodes, 2))
  steps = []
  for _ in range(HORIZON):
    good = np.clip(_expert(p, g) + 0.1 * rng.normal(size=p.shape), -1, 1)
    a = np.where(rng.uniform(size=(n_episodes, 1)) < p_expert, good, rng.uniform(-1, 1, p.shape))
    next_p, r = _step(p, a, g)
    steps.append((np.concatenate([p, g], 1), a, r, np.concatenate([next_p, g], 1)))
    p = next_p
  obs, action, reward, next_obs = (np.concatenate(x).astype(np.float32) for x in zip(*steps))
  zeros = np.zeros_like(reward)
  return Transition(obs, action, reward, zeros, next_obs, zeros)


def _evaluate(policy, n=100, seed=123):
  rng = np.random.default_rng(seed)
  p, g = rng.uniform(-1, 1, (2, n, 2))
  total = 0.0
  for _ in range(HORIZON):
    p, r = _step(p, np.asarray(policy(np.concatenate([p, g], 1).astype(np.float32))), g)
    total = total + r
  return float(total.mean())


def _train_offline(config, data, n_updates=2000, k=100, batch_size=256, seed=0):
  state = iql.init(jax.random.PRNGKey(seed), 4, 2, config)
  greedy = lambda s: (lambda o: iql.act(s, jnp.asarray(o), jax.random.PRNGKey(0), True))
  initial = _evaluate(greedy(state))
  rng = np.random.default_rng(seed)
  for _ in range(n_updates // k):
    idx = rng.integers(0, len(data.obs), (k, batch_size))
    state, metrics = iql.update_n(state, jax.tree.map(lambda x: jnp.asarray(x[idx]), data))
  chex.assert_tree_all_finite(metrics)
  return initial, _evaluate(greedy(state))


@pytest.fixture(scope='module')
def point_mass():
  data = _point_mass_dataset()
  rng = np.random.default_rng(1)
  random_return = _evaluate(lambda o: rng.uniform(-1, 1, (len(o), 2)))
  expert_return = _evaluate(lambda o: _expert(o[:, :2], o[:, 2:]))
  return data, random_return, expert_return


def test_iql_awr_beats_random_and_bc_on_mixed_data(point_mass):
  data, random_return, expert_return = point_mass
  config = iql.Config(hidden_dims=(64, 64))
  _, bc_return = _train_offline(dataclasses.replace(config, temperature=0.0), data)  # β=0: BC.
  _, iql_return = _train_offline(config, data)
  print(f'point mass returns: random {random_return:.2f} BC {bc_return:.2f} '
        f'IQL {iql_return:.2f} expert {expert_return:.2f}')
  assert iql_return > bc_return + 3.0
  assert iql_return > random_return + 10.0
  assert iql_return > expert_return - 1.5


def test_iql_sac_actor_improves(point_mass):
  data, random_return, _ = point_mass
  initial, final = _train_offline(iql.Config(hidden_dims=(64, 64), actor_loss='sac'), data)
  print(f'IQL-sac point mass: initial {initial:.2f} final {final:.2f} random {random_return:.2f}')
  assert final > initial + 5.0
  assert final > random_return + 10.0
