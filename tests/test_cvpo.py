"""CVPO: E-step dual and M-step ops against hand-computed values, the jitted learner, its
KL bounds and λ cap at the shipped defaults, the presets, n-step replay sampling, and learning
on a one-step task with a cost."""

import math

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import numpy as np

from gold_jax.agents import cvpo, cvpo_ops
from gold_jax.data import replay
from gold_jax.types import NStepTransition, Transition

# One state, three actions (M = 3, B = 1): the third is the best for reward but costs 1.
Q_R = np.array([[1.0], [2.0], [3.0]], np.float32)
Q_C = np.array([[0.0], [0.0], [1.0]], np.float32)
EPSILON = 0.1

REQUIRED_METRICS = (
    'loss/critic_r', 'loss/critic_c', 'loss/policy', 'loss/dual', 'training/eta',
    'training/lambda', 'training/kl_mean', 'training/kl_std', 'training/alpha_mean',
    'training/alpha_std', 'training/cost_limit', 'training/q_r_mean', 'training/q_c_mean',
    'training/step_kl_mean', 'training/step_kl_std', 'training/policy_grad_norm')


def _np_kl_uniform(w):
  return float(np.sum(w * np.log(w * len(w))))


def _np_primal_optimum(cost_limit, step=1e-3):
  """Brute force over the simplex: max E_q[Q_r] s.t. E_q[Q_c] <= c, KL(q || uniform) <= ε."""
  q1, q3 = np.meshgrid(np.arange(step, 1, step), np.arange(step, 1, step), indexing='ij')
  q2 = 1.0 - q1 - q3
  ok = q2 > 0
  q = np.stack([q1[ok], q2[ok], q3[ok]])
  kl = np.sum(q * np.log(3 * q), axis=0)
  feasible = (kl <= EPSILON) & (q[2] <= cost_limit)
  return np.max((Q_R[:, 0] @ q)[feasible])


class DualTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_value_and_gradient_match_hand_computation(self):
    eta, lam, limit = 1.0, 0.5, 0.2
    # By hand: A = Q_r − λ Q_c = (1, 2, 2.5).
    a = np.array([1.0, 2.0, 2.5])
    log_norm = math.log((math.exp(1.0) + math.exp(2.0) + math.exp(2.5)) / 3.0)
    w = np.exp(a) / np.exp(a).sum()
    kl = float(np.sum(w * a) - log_norm)
    expected_value = eta * EPSILON + lam * limit + eta * log_norm
    expected_grad = (EPSILON - kl, limit - w[2])

    value_and_grad = self.variant(jax.value_and_grad(cvpo_ops.dual_function, argnums=(0, 1)))
    value, grad = value_and_grad(eta, lam, Q_R, Q_C, EPSILON, limit)
    np.testing.assert_allclose(value, expected_value, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-6)
    kl_q, cost_q = self.variant(cvpo_ops.kl_and_cost)(eta, lam, Q_R, Q_C)
    np.testing.assert_allclose((kl_q, cost_q), (kl, w[2]), rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_inactive_constraint_makes_kl_equal_epsilon(self):
    limit = 1.0  # E_q[Q_c] <= 1 always holds
    eta, lam = self.variant(lambda qr, qc: cvpo_ops.solve_dual(qr, qc, EPSILON, limit, 30))(
        Q_R, Q_C)
    weights = np.asarray(cvpo_ops.estep_weights(Q_R, Q_C, eta, lam))[:, 0]
    self.assertEqual(float(lam), 0.0)
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(_np_kl_uniform(weights), EPSILON, atol=1e-4)
    np.testing.assert_allclose(weights @ Q_R[:, 0], _np_primal_optimum(limit), atol=2e-3)

  @chex.variants(with_jit=True, without_jit=True)
  def test_active_constraint_meets_the_limit(self):
    limit = 0.2  # the uniform prior has E[Q_c] = 1/3
    eta, lam = self.variant(lambda qr, qc: cvpo_ops.solve_dual(qr, qc, EPSILON, limit, 30))(
        Q_R, Q_C)
    weights = np.asarray(cvpo_ops.estep_weights(Q_R, Q_C, eta, lam))[:, 0]
    self.assertGreater(float(lam), 0.0)
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(weights @ Q_C[:, 0], limit, atol=1e-4)
    np.testing.assert_allclose(_np_kl_uniform(weights), EPSILON, atol=1e-4)
    # Strong duality: the weights reach the brute-force primal optimum.
    np.testing.assert_allclose(weights @ Q_R[:, 0], _np_primal_optimum(limit), atol=2e-3)
    grad = jax.grad(cvpo_ops.dual_function, argnums=(0, 1))(eta, lam, Q_R, Q_C, EPSILON, limit)
    np.testing.assert_allclose(grad, (0.0, 0.0), atol=1e-4)

  def test_infeasible_limit_minimises_cost_within_the_kl_bound(self):
    limit = 0.01  # needs KL(q || uniform) ≈ 0.36 > ε
    eta, lam = jax.jit(lambda qr, qc: cvpo_ops.solve_dual(qr, qc, EPSILON, limit, 30,
                                                          dual_max=1e5))(Q_R, Q_C)
    weights = np.asarray(cvpo_ops.estep_weights(Q_R, Q_C, eta, lam))[:, 0]
    np.testing.assert_allclose(lam, 1e5, rtol=1e-5)  # at the bound
    np.testing.assert_allclose(_np_kl_uniform(weights), EPSILON, atol=1e-4)
    # Least cost at KL = ε puts equal weight on the two free actions.
    q3 = weights[2]
    kl_at_q3 = (1 - q3) * math.log(1.5 * (1 - q3)) + q3 * math.log(3 * q3)
    np.testing.assert_allclose(kl_at_q3, EPSILON, atol=1e-3)
    self.assertLess(q3, 1 / 3)

  def test_solver_is_scale_free(self):
    """Scaling both Q's by s scales η by s and leaves λ and the weights unchanged."""
    limit = 0.2
    solve = jax.jit(lambda qr, qc, c: cvpo_ops.solve_dual(qr, qc, EPSILON, c, 30))
    eta, lam = solve(Q_R, Q_C, limit)
    eta_s, lam_s = solve(100.0 * Q_R, 100.0 * Q_C, 100.0 * limit)
    np.testing.assert_allclose(eta_s, 100.0 * eta, rtol=1e-3)
    np.testing.assert_allclose(lam_s, lam, rtol=1e-3)


class MStepOpsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_decoupled_kl(self):
    mean_old, log_std_old = np.array([[0.0, 1.0]]), np.log(np.array([[1.0, 2.0]]))
    mean, log_std = np.array([[0.5, 1.0]]), np.log(np.array([[0.5, 2.0]]))
    kl_mean, kl_std = self.variant(cvpo_ops.decoupled_gaussian_kl)(
        mean_old, log_std_old, mean, log_std)
    # Mean part: 0.5 * 0.5² / 1². Std part: log(0.5) + 1 / (2 * 0.25) − 1/2 (+ 0 for dim 2).
    np.testing.assert_allclose(kl_mean, [0.125], rtol=1e-6)
    np.testing.assert_allclose(kl_std, [math.log(0.5) + 2.0 - 0.5], rtol=1e-6)
    same = self.variant(cvpo_ops.decoupled_gaussian_kl)(mean_old, log_std_old, mean_old,
                                                         log_std_old)
    np.testing.assert_allclose(same, [[0.0], [0.0]], atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  def test_weighted_mle_loss(self):
    weights = np.array([[0.25], [0.75]], np.float32)     # (M=2, B=1)
    actions = np.array([[[0.0]], [[1.0]]], np.float32)   # (M, B, 1)
    mean, log_std = np.array([[0.5]], np.float32), np.log(np.array([[2.0]], np.float32))
    mean_old, log_std_old = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32)
    log_n = lambda x, m, s: -0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
    # Averaged over the M = 2 samples (and the one state), as the reference does.
    expected = -sum(w * (log_n(a, 0.5, 1.0) + log_n(a, 0.0, 2.0))
                    for w, a in zip((0.25, 0.75), (0.0, 1.0))) / 2
    loss = self.variant(cvpo_ops.weighted_mle_loss)(weights, actions, mean, log_std, mean_old,
                                                    log_std_old)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)

  def test_weighted_mle_loss_averages_over_samples_and_states(self):
    """The same q on 4x the samples (each weight / 4) gives 1/4 of the loss: the likelihood is
    averaged over samples, not summed; repeating the states leaves it unchanged."""
    key = jax.random.PRNGKey(0)
    ks = jax.random.split(key, 4)
    weights = jax.nn.softmax(jax.random.normal(ks[0], (8, 5)), axis=0)
    actions = jax.random.uniform(ks[1], (8, 5, 2), minval=-1.0, maxval=1.0)
    mean, log_std = jax.random.normal(ks[2], (5, 2)) * 0.3, jnp.full((5, 2), -0.5)
    mean_old, log_std_old = jax.random.normal(ks[3], (5, 2)) * 0.3, jnp.full((5, 2), -0.7)
    loss = cvpo_ops.weighted_mle_loss(weights, actions, mean, log_std, mean_old, log_std_old)
    tiled = cvpo_ops.weighted_mle_loss(jnp.tile(weights, (4, 1)) / 4, jnp.tile(actions, (4, 1, 1)),
                                       mean, log_std, mean_old, log_std_old)
    np.testing.assert_allclose(tiled, loss / 4, rtol=1e-5)
    states = lambda x: jnp.concatenate([x, x], axis=-2 if x.ndim == 3 else -1)
    per_state = lambda x: jnp.concatenate([x, x], axis=0)
    repeated = cvpo_ops.weighted_mle_loss(states(weights), states(actions), per_state(mean),
                                          per_state(log_std), per_state(mean_old),
                                          per_state(log_std_old))
    np.testing.assert_allclose(repeated, loss, rtol=1e-5)

  def test_kl_multiplier_step(self):
    # Violated bound: α grows by lr * (KL − ε); satisfied: α shrinks, never below 0 or above max.
    np.testing.assert_allclose(cvpo_ops.update_kl_multiplier(1.0, 0.003, 0.001, 100.0, 10.0), 1.2)
    self.assertEqual(float(cvpo_ops.update_kl_multiplier(0.01, 0.0, 0.001, 100.0, 10.0)), 0.0)
    self.assertEqual(float(cvpo_ops.update_kl_multiplier(9.99, 1.0, 0.001, 100.0, 10.0)), 10.0)

  def test_cost_limit_conversion_and_schedule(self):
    # 10 per 1000-step episode, γ = 0.99: 10 * (1 − 0.99^1000) / (0.01 * 1000).
    np.testing.assert_allclose(cvpo_ops.episode_cost_to_q(10.0, 0.99, 1000),
                               (1 - 0.99 ** 1000), rtol=1e-6)
    np.testing.assert_allclose(cvpo_ops.episode_cost_to_q(0.3, 0.99, 1), 0.3, rtol=1e-6)
    values = [float(cvpo_ops.linear_schedule(t, 5.0, 1.0, 1000)) for t in (0, 500, 1000, 4000)]
    np.testing.assert_allclose(values, [5.0, 3.0, 1.0, 1.0], rtol=1e-6)
    self.assertEqual(float(cvpo_ops.linear_schedule(7, 5.0, 1.0, 0)), 1.0)


# A small learner shared by the tests below (one compilation per jitted function), with a
# frozen prior (policy_tau = 0).
OBS_DIM, ACT_DIM, BATCH, K = 3, 2, 32, 20
SMALL = cvpo.Config(hidden_dims=(16, 16), num_samples=8, dual_steps=12, m_steps=3,
                    policy_tau=0.0)


def _random_batch(key, shape=()):
  ks = jax.random.split(key, 5)
  return Transition(
      obs=jax.random.normal(ks[0], (*shape, BATCH, OBS_DIM)),
      action=jax.random.uniform(ks[1], (*shape, BATCH, ACT_DIM), minval=-1.0, maxval=1.0),
      reward=jax.random.normal(ks[2], (*shape, BATCH)),
      cost=(jax.random.uniform(ks[3], (*shape, BATCH)) < 0.3).astype(jnp.float32),
      next_obs=jax.random.normal(ks[4], (*shape, BATCH, OBS_DIM)),
      terminated=jnp.zeros((*shape, BATCH)))


class LearnerTest(absltest.TestCase):

  def test_act_shapes_and_bounds(self):
    state = cvpo.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, SMALL)
    key = jax.random.PRNGKey(1)
    single = cvpo.act(state, jnp.ones(OBS_DIM), key)
    chex.assert_shape(single, (ACT_DIM,))
    chex.assert_type(single, jnp.float32)
    many = cvpo.act(state, jax.random.normal(key, (500, OBS_DIM)) * 5.0, key)
    chex.assert_shape(many, (500, ACT_DIM))
    self.assertTrue(bool(jnp.all(jnp.abs(many) <= 1.0)))
    mean = cvpo.act(state, jnp.ones((4, OBS_DIM)), key, deterministic=True)
    again = cvpo.act(state, jnp.ones((4, OBS_DIM)), jax.random.PRNGKey(7), deterministic=True)
    chex.assert_trees_all_close(mean, again)  # the mean ignores the key
    self.assertTrue(bool(jnp.all(jnp.abs(mean) < 1.0)))

  def test_update_keeps_structure_and_reports_finite_metrics(self):
    state = cvpo.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, SMALL)
    new_state, metrics = cvpo.update(state, _random_batch(jax.random.PRNGKey(1)))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    self.assertEqual(int(new_state.step), 1)
    for name in REQUIRED_METRICS:
      self.assertIn(name, metrics)
    for name, value in metrics.items():
      chex.assert_shape(value, ())
      chex.assert_type(value, jnp.float32)
    chex.assert_tree_all_finite(metrics)
    chex.assert_tree_all_finite(new_state)
    # The prior was updated with policy_tau = 0: unchanged; the policy moved.
    chex.assert_trees_all_close(new_state.target_policy_params, state.target_policy_params)
    self.assertGreater(float(metrics['training/kl_mean']) + float(metrics['training/kl_std']), 0)
    np.testing.assert_allclose(metrics['training/cost_limit'], SMALL.cost_limit_end)

  def test_no_recompilation(self):
    state = cvpo.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, SMALL)
    state, _ = cvpo.update(state, _random_batch(jax.random.PRNGKey(1)))
    state, _ = cvpo.update_n(state, _random_batch(jax.random.PRNGKey(2), (K,)))
    sizes = cvpo.update._cache_size(), cvpo.update_n._cache_size()
    for i in range(5):
      state, _ = cvpo.update(state, _random_batch(jax.random.PRNGKey(10 + i)))
      state, metrics = cvpo.update_n(state, _random_batch(jax.random.PRNGKey(20 + i), (K,)))
    self.assertEqual((cvpo.update._cache_size(), cvpo.update_n._cache_size()), sizes)
    self.assertEqual(int(state.step), 1 + K + 5 * (1 + K))
    chex.assert_tree_all_finite(metrics)

  def test_wrong_batch_is_rejected(self):
    state = cvpo.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, SMALL)
    batch = _random_batch(jax.random.PRNGKey(1))
    with self.assertRaisesRegex(ValueError, 'obs'):
      cvpo.update(state, batch._replace(obs=jnp.zeros((BATCH, OBS_DIM + 1))))
    with self.assertRaisesRegex(ValueError, 'reward'):
      cvpo.update(state, batch._replace(reward=jnp.zeros((BATCH, 1))))
    with self.assertRaisesRegex(TypeError, 'action'):
      cvpo.update(state, batch._replace(action=batch.action.astype(jnp.int32)))

  def test_policy_gradient_is_clipped(self):
    """Adam after a global-norm clip: two gradients of norms 50 and 0.5 clipped to 0.5 are the
    same gradient, so both steps are equal; without the clip Adam weighs them apart."""
    clipped, _ = cvpo._optimizers(cvpo.Config(max_grad_norm=0.5, policy_lr=0.1))
    plain, _ = cvpo._optimizers(cvpo.Config(max_grad_norm=0.0, policy_lr=0.1))
    grads = [{'w': jnp.array([30.0, 40.0])}, {'w': jnp.array([0.3, 0.4])}]

    def steps(opt):
      params = {'w': jnp.zeros(2)}
      opt_state, out = opt.init(params), []
      for g in grads:
        updates, opt_state = opt.update(g, opt_state, params)
        out.append(updates['w'])
      return out

    first, second = steps(clipped)
    np.testing.assert_allclose(first, second, rtol=1e-5)
    plain_first, plain_second = steps(plain)
    self.assertGreater(float(jnp.abs(plain_first - plain_second).max()), 1e-3)
    state = cvpo.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, SMALL)
    _, metrics = cvpo.update(state, _random_batch(jax.random.PRNGKey(1)))
    self.assertGreater(float(metrics['training/policy_grad_norm']), SMALL.max_grad_norm)


class DefaultsTest(absltest.TestCase):

  def test_m_step_kl_and_lambda_stay_bounded_at_the_defaults(self):
    """The shipped defaults (no raised caps): over 200 updates on a task whose cost limit
    cannot be met, the mean per-update KL between the policy before and after the M-step stays
    within 1.5x each bound, and λ stays at or below its cap."""
    config = cvpo.Config(episode_len=10, cost_limit_start=0.0, cost_limit_end=0.0)
    state = cvpo.init(jax.random.PRNGKey(0), 4, 2, config)
    key, history = jax.random.PRNGKey(1), []
    for _ in range(10):
      key, data_key = jax.random.split(key)
      ko, ka = jax.random.split(data_key)
      obs = jax.random.normal(ko, (20, 64, 4))
      action = jax.random.uniform(ka, (20, 64, 2), minval=-1.0, maxval=1.0)
      reward = jnp.exp(-((action[..., 0] - 0.8) / 0.3) ** 2)  # one-step: peak at a0 = 0.8
      cost = (action[..., 0] > 0.5).astype(jnp.float32)
      batches = Transition(obs, action, reward, cost, obs, jnp.ones((20, 64)))
      state, metrics = cvpo.update_n(state, batches)
      history.append(jax.device_get(metrics))
    step_kl_mean = np.mean([m['training/step_kl_mean'] for m in history])
    step_kl_std = np.mean([m['training/step_kl_std'] for m in history])
    self.assertLessEqual(step_kl_mean, 1.5 * config.kl_mean)
    self.assertLessEqual(step_kl_std, 1.5 * config.kl_std)
    self.assertGreater(step_kl_mean + step_kl_std, 0.0)  # the policy does move
    lam = np.array([m['training/lambda'] for m in history])
    self.assertTrue(np.all(lam <= config.lambda_max * (1 + 1e-5)), lam)
    np.testing.assert_allclose(lam[-1], config.lambda_max, rtol=1e-3)  # the cap binds
    self.assertEqual(int(state.step), 200)


def _bandit_batches(key, state, k, batch_size=32, obs_dim=4):
  """One-step task: reward exp(−((a − 0.8) / 0.3)²) peaks at a = 0.8, cost 1 for a > 0.5.

  Half of each batch has uniform actions, half comes from the current policy (online data).
  """
  ko, ka, kp = jax.random.split(key, 3)
  obs = jax.random.normal(ko, (k, batch_size, obs_dim))
  uniform = jax.random.uniform(ka, (k, batch_size, 1), minval=-1.0, maxval=1.0)
  policy = cvpo.act(state, obs.reshape(-1, obs_dim), kp).reshape(k, batch_size, 1)
  action = jnp.where(jnp.arange(batch_size)[:, None] < batch_size // 2, uniform, policy)
  reward = jnp.exp(-((action[..., 0] - 0.8) / 0.3) ** 2)
  cost = (action[..., 0] > 0.5).astype(jnp.float32)
  return Transition(obs, action, reward, cost, obs, jnp.ones((k, batch_size)))


class LearningTest(absltest.TestCase):

  def test_cost_limit_moves_the_policy_below_the_costly_region(self):
    """With a loose budget the policy heads for the reward peak at 0.8; once the budget has
    decayed to 0.1 (episode length 1: Q_c threshold 0.1), it settles below the costly a > 0.5."""
    # A faster prior (policy_tau 0.05): with the M-step KL to it bounded, the default Polyak
    # rate would take far longer than the test's budget to cross the action range.
    config = cvpo.Config(hidden_dims=(32, 32), num_samples=16, dual_steps=16, critic_lr=3e-3,
                         tau=0.05, policy_tau=0.05, episode_len=1, cost_limit_start=3.0,
                         cost_limit_end=0.1, cost_decay_steps=2000)
    state = cvpo.init(jax.random.PRNGKey(0), 4, 1, config)
    eval_obs = jax.random.normal(jax.random.PRNGKey(123), (512, 4))
    key, k = jax.random.PRNGKey(1), 50

    def train(num_updates):
      nonlocal state, key
      for _ in range(num_updates // k):
        key, data_key = jax.random.split(key)
        state, metrics = cvpo.update_n(state, _bandit_batches(data_key, state, k))
      return metrics

    def evaluate():
      mean = cvpo.act(state, eval_obs, key, deterministic=True)
      sample = cvpo.act(state, eval_obs, key)
      return float(mean.mean()), float((sample > 0.5).mean())

    metrics = train(1000)          # budget still above 1.5: the constraint is inactive
    loose_mean, _ = evaluate()
    self.assertEqual(float(metrics['training/lambda']), 0.0)
    self.assertBetween(loose_mean, 0.6, 0.95)
    metrics = train(1400)          # budget 0.1 from update 2000 on
    tight_mean, tight_cost = evaluate()
    np.testing.assert_allclose(metrics['training/cost_limit'], 0.1, rtol=1e-6)
    self.assertGreater(float(metrics['training/lambda']), 0.0)
    self.assertLess(tight_mean, 0.4)
    self.assertLess(tight_cost, 0.25)
    chex.assert_tree_all_finite(metrics)


class PresetTest(absltest.TestCase):

  def test_presets(self):
    self.assertEqual(set(cvpo.PRESETS), {'released', 'fsrl'})
    self.assertEqual(cvpo.preset('released'), cvpo.Config())
    released = cvpo.Config()
    self.assertEqual((released.m_steps, released.num_samples, released.estep_kl,
                      released.kl_mean, released.kl_std, released.policy_lr,
                      released.critic_lr, released.max_grad_norm, released.n_step),
                     (6, 32, 0.1, 1e-3, 1e-3, 2e-3, 1e-3, 0.01, 1))
    fsrl = cvpo.preset('fsrl', cost_limit_end=5.0)
    self.assertEqual((fsrl.estep_kl, fsrl.num_samples, fsrl.kl_mean, fsrl.kl_std,
                      fsrl.lambda_max, fsrl.dual_max, fsrl.alpha_mean_max, fsrl.alpha_std_max,
                      fsrl.discount, fsrl.n_step, fsrl.updates_per_step, fsrl.cost_limit_end),
                     (0.02, 16, 0.005, 0.0005, 20.0, 20.0, 0.5, 0.5, 0.97, 2, 0.2, 5.0))
    self.assertEqual((fsrl.hidden_dims, fsrl.critic_hidden_dims), ((256, 256), (128, 128)))
    with self.assertRaisesRegex(ValueError, "'released', 'fsrl'"):
      cvpo.preset('paper')

  def test_fsrl_preset_learns_from_n_step_batches(self):
    """The student policy stays 2x256 while the critics are 128-128; an n-step batch
    bootstraps with its own discount."""
    config = cvpo.preset('fsrl', hidden_dims=(32, 32), critic_hidden_dims=(8, 8))
    state = cvpo.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, config)
    widths = lambda params: {leaf.shape[-1] for leaf in jax.tree.leaves(params)}
    self.assertIn(32, widths(state.policy_params))
    self.assertNotIn(32, widths(state.critic_params))
    self.assertIn(8, widths(state.critic_params))
    batch = _random_batch(jax.random.PRNGKey(1))
    n_step = NStepTransition(*batch, discount=jnp.full((BATCH,), config.discount ** 2))
    new_state, metrics = cvpo.update(state, n_step)
    chex.assert_tree_all_finite((new_state, metrics))
    # With every transition terminal the discount plays no part: same as the 1-step batch.
    terminal = batch._replace(terminated=jnp.ones(BATCH))
    _, one = cvpo.update(state, terminal)
    _, two = cvpo.update(state, NStepTransition(*terminal, discount=n_step.discount))
    np.testing.assert_allclose(one['loss/critic_r'], two['loss/critic_r'], rtol=1e-5)
    _, bootstrapped = cvpo.update(state, n_step._replace(discount=jnp.full((BATCH,), 0.5)))
    self.assertNotAlmostEqual(float(metrics['loss/critic_r']),
                              float(bootstrapped['loss/critic_r']), places=6)


def _two_env_buffer():
  """Two envs (stride 2), four steps, capacity 8. Env A: r 1, 2 (terminated), then a new
  episode 3, 4. Env B: r 10, 20, 30 (truncated), 40. Costs 0/1; obs = entry id, next_obs =
  id + 0.5."""
  buffer = replay.ReplayBuffer(1, 1, 8)
  steps = [((1, 10), (0, 1), (False, False), (False, False)),
           ((2, 20), (1, 0), (True, False), (True, False)),
           ((3, 30), (0, 1), (False, False), (False, True)),
           ((4, 40), (0, 0), (False, False), (False, False))]
  for t, (reward, cost, terminated, done) in enumerate(steps):
    ids = np.array([[2 * t], [2 * t + 1]], np.float32)
    buffer.add(ids, np.zeros((2, 1)), reward, cost, ids + 0.5, terminated, replay.STUDENT,
               done=np.array(terminated) | np.array(done))
  return buffer


class NStepSamplingTest(absltest.TestCase):

  def test_n_step_transitions_by_hand(self):
    buffer = _two_env_buffer()
    batch = buffer.n_step_transitions(np.array([0, 1, 4, 5, 7]), 3, 0.5, stride=2)
    self.assertIsInstance(batch, NStepTransition)
    # A0: A1 ends the episode (k = 2). B0: B1, B2 (truncated, k = 3). A2: A3 is the newest
    # entry (k = 2). B2 ends its episode (k = 1). B3 is the newest (k = 1).
    np.testing.assert_allclose(batch.reward, [1 + 0.5 * 2, 10 + 0.5 * 20 + 0.25 * 30,
                                              3 + 0.5 * 4, 30, 40])
    np.testing.assert_allclose(batch.cost, [0.5, 1 + 0.25, 0, 1, 0])
    np.testing.assert_allclose(batch.next_obs[:, 0], [2.5, 5.5, 6.5, 5.5, 7.5])
    np.testing.assert_allclose(batch.terminated, [1, 0, 0, 0, 0])
    np.testing.assert_allclose(batch.discount, [0.25, 0.125, 0.25, 0.5, 0.5])
    np.testing.assert_allclose(batch.obs[:, 0], [0, 1, 4, 5, 7])
    # Once full, a new step overwrites the oldest entries: A3 now continues into A4 (entry 0).
    buffer.add(np.array([[8.0], [9.0]]), np.zeros((2, 1)), (5, 50), (0, 0), [[8.5], [9.5]],
               (False, False), replay.STUDENT)
    wrapped = buffer.n_step_transitions(np.array([6, 2]), 3, 0.5, stride=2)
    np.testing.assert_allclose(wrapped.reward, [4 + 0.5 * 5, 2])
    np.testing.assert_allclose(wrapped.next_obs[:, 0], [8.5, 2.5])
    np.testing.assert_allclose(wrapped.discount, [0.25, 0.5])

  def test_one_step_sampling_is_unchanged(self):
    buffer = _two_env_buffer()
    default = buffer.sample_stacked(3, 5, np.random.default_rng(7))
    explicit = buffer.sample_stacked(3, 5, np.random.default_rng(7), n_step=1, discount=0.9,
                                     stride=2)
    idx = np.random.default_rng(7).integers(0, len(buffer), size=(3, 5))
    self.assertIs(type(default), Transition)
    self.assertIs(type(explicit), Transition)
    for name in Transition._fields:
      np.testing.assert_array_equal(getattr(default, name), getattr(explicit, name))
      np.testing.assert_array_equal(getattr(default, name), buffer._data[name][idx])
    n_step = buffer.sample_stacked(3, 5, np.random.default_rng(7), n_step=2, discount=0.9,
                                   stride=2)
    chex.assert_shape(n_step.discount, (3, 5))
    np.testing.assert_array_equal(n_step.obs, default.obs)

  def test_done_flags_survive_a_state_dict_round_trip(self):
    buffer = _two_env_buffer()
    state = buffer.to_state_dict()
    again = replay.ReplayBuffer.from_state_dict(state)
    np.testing.assert_array_equal(again._done, buffer._done)
    del state['done']  # a buffer saved before `done` was stored: terminated stands in
    old = replay.ReplayBuffer.from_state_dict(state)
    np.testing.assert_array_equal(old._done, buffer._data['terminated'] != 0)


if __name__ == '__main__':
  absltest.main()
