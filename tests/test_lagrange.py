"""Tests of the shared Lagrange / PID multiplier."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gold_jax.agents import lagrange


def _run(multiplier, estimates, limit, config):
  step = jax.jit(lambda m, e: lagrange.update(m, e, limit, config)[0])
  values = []
  for e in estimates:
    multiplier = step(multiplier, jnp.float32(e))
    values.append(float(multiplier.value))
  return multiplier, np.array(values)


def test_discounted_cost_limit():
  # κ (1 − γ^T) / ((1 − γ) T): κ = 25 per 1000-step episode at γ = 0.99.
  expected = 25.0 * (1 - 0.99**1000) / (0.01 * 1000)
  assert lagrange.discounted_cost_limit(25.0, 1000, 0.99) == pytest.approx(expected)
  assert expected == pytest.approx(2.5, rel=1e-4)  # γ^T ≈ 4e-5: close to κ / (T (1 − γ)).
  # Short episodes: (κ / T) Σ_{t<T} γ^t by hand.
  assert lagrange.discounted_cost_limit(10.0, 3, 0.5) == pytest.approx(10.0 / 3 * 1.75)
  # T = 1 and γ = 1 leave κ itself; γ → 1 tends to it continuously.
  assert lagrange.discounted_cost_limit(7.0, 1, 0.9) == pytest.approx(7.0)
  assert lagrange.discounted_cost_limit(7.0, 300, 1.0) == 7.0
  assert lagrange.discounted_cost_limit(7.0, 300, 1 - 1e-7) == pytest.approx(7.0, rel=1e-4)
  assert lagrange.discounted_cost_limit(7.0, 300, 0.0) == pytest.approx(7.0 / 300)
  # A traced budget (a schedule inside jit) passes through.
  traced = jax.jit(lambda k: lagrange.discounted_cost_limit(k, 10, 0.5))(jnp.float32(4.0))
  np.testing.assert_allclose(traced, 4.0 * (1 - 0.5**10) / 5, rtol=1e-6)
  for bad in ((-1.0, 1000, 0.99), (1.0, 0, 0.99), (1.0, 10, 1.5), (1.0, 10, -0.1)):
    with pytest.raises(ValueError):
      lagrange.discounted_cost_limit(*bad)


def test_cvpo_uses_the_same_threshold():
  from gold_jax.agents import cvpo_ops
  assert cvpo_ops.episode_cost_to_q(25.0, 0.99, 1000) == lagrange.discounted_cost_limit(
      25.0, 1000, 0.99)


def test_init_validates():
  with pytest.raises(ValueError, match='>= 0'):
    lagrange.init(-0.5)
  with pytest.raises(ValueError, match='rule'):
    lagrange.init(0.0, lagrange.Config(rule='sgd'))


@pytest.mark.parametrize('method', ['lagrange', 'pid'])
def test_rises_above_limit_and_falls_to_zero_below(method):
  config = lagrange.Config(rule=method, lr=0.05, kp=0.1, ki=0.05, kd=0.0)
  multiplier = lagrange.init(0.0, config)
  multiplier, rising = _run(multiplier, [3.0] * 50, 1.0, config)  # Estimate above the limit.
  assert np.all(np.diff(rising) >= 0) and rising[-1] > 1.0
  multiplier, falling = _run(multiplier, [0.0] * 400, 1.0, config)  # Below the limit.
  assert falling[-1] == 0.0  # Exactly zero: projected, not log-parameterised.
  assert np.all(falling >= 0.0)
  chex.assert_shape(multiplier.value, ())
  chex.assert_type(multiplier.value, jnp.float32)


def test_lagrange_first_step_is_adam_sign_step():
  config = lagrange.Config(rule='lagrange', lr=0.01)
  m0 = lagrange.init(0.5, config)
  up, metrics = lagrange.update(m0, jnp.float32(4.0), 1.0, config)
  down, _ = lagrange.update(m0, jnp.float32(0.0), 1.0, config)
  # Adam's first step is lr * g / (|g| + eps): λ moves by lr against the gradient −(J_c − d).
  np.testing.assert_allclose(up.value, 0.51, rtol=1e-5)
  np.testing.assert_allclose(down.value, 0.49, rtol=1e-5)
  np.testing.assert_allclose(metrics['training/lambda_cost_error'], 3.0)


def test_pid_hand_computed():
  config = lagrange.Config(rule='pid', kp=0.5, ki=0.1, kd=0.2, max_value=10.0)
  m = lagrange.init(1.0, config)  # Integral starts at λ0 / K_i = 10.
  np.testing.assert_allclose(m.integral, 10.0)
  # e = 2: I = 12, D = max(0, 2 - 0) = 2 -> λ = 0.5*2 + 0.1*12 + 0.2*2 = 2.6.
  m, _ = lagrange.update(m, jnp.float32(3.0), 1.0, config)
  np.testing.assert_allclose(m.value, 2.6, rtol=1e-6)
  # e = -1: I = 11, D = max(0, -1 - 2) = 0 -> λ = -0.5 + 1.1 = 0.6.
  m, _ = lagrange.update(m, jnp.float32(0.0), 1.0, config)
  np.testing.assert_allclose(m.value, 0.6, rtol=1e-6)
  # The upper clip holds.
  m, _ = lagrange.update(m, jnp.float32(1000.0), 1.0, config)
  np.testing.assert_allclose(m.value, 10.0)


@pytest.mark.parametrize('method', ['lagrange', 'pid'])
def test_max_error_bounds_the_step_after_a_cost_burst(method):
  config = lagrange.Config(rule=method, lr=0.1, kp=0.1, ki=0.1, kd=0.0)
  clipped, metrics = lagrange.update(lagrange.init(0.0, config), jnp.float32(100.0), 1.0, config,
                                     max_error=2.0)
  same, _ = lagrange.update(lagrange.init(0.0, config), jnp.float32(3.0), 1.0, config)
  np.testing.assert_allclose(metrics['training/lambda_cost_error'], 2.0)
  np.testing.assert_allclose(clipped.value, same.value)
