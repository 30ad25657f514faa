"""Diagonal Gaussian and tanh-squashed Gaussian helpers (pure functions)."""

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)  # A Python float: importing must not start a JAX backend.


def gaussian_log_prob(mean, log_std, x):
  """Sum over the last axis of the diagonal Gaussian log-density of `x`."""
  z = (x - mean) * jnp.exp(-log_std)
  return jnp.sum(-0.5 * z**2 - log_std - 0.5 * _LOG_2PI, axis=-1)


def gaussian_entropy(log_std):
  return jnp.sum(log_std + 0.5 * (1.0 + _LOG_2PI), axis=-1)


def gaussian_sample(key, mean, log_std):
  return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)


def _tanh_log_det(pre_tanh):
  # log(1 - tanh(u)^2) computed stably: 2 * (log 2 - u - softplus(-2u)).
  return jnp.sum(2.0 * (jnp.log(2.0) - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh)), axis=-1)


def tanh_gaussian_sample(key, mean, log_std):
  """Reparameterised sample of tanh(N(mean, std)) and its log-probability."""
  u = gaussian_sample(key, mean, log_std)
  return jnp.tanh(u), gaussian_log_prob(mean, log_std, u) - _tanh_log_det(u)


def tanh_gaussian_log_prob(mean, log_std, action, eps=1e-6):
  """Log-probability of `action` in (-1, 1) under tanh(N(mean, std))."""
  a = jnp.clip(action, -1.0 + eps, 1.0 - eps)
  u = jnp.arctanh(a)
  return gaussian_log_prob(mean, log_std, u) - _tanh_log_det(u)


def policy_action(key, mean, log_std, deterministic: bool, squash: bool):
  """An action in [-1, 1] of a Gaussian policy head: the mode if `deterministic`, else a
  sample; `squash` puts it through tanh (tanh-Gaussian policies), else it is clipped."""
  if squash:
    action = jnp.tanh(mean) if deterministic else tanh_gaussian_sample(key, mean, log_std)[0]
  else:
    action = mean if deterministic else gaussian_sample(key, mean, log_std)
  return jnp.clip(action, -1.0, 1.0)
