"""Counter-hash dropout: keep rate, independence, determinism, and its use in the DT."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gold_jax.agents import dt
from gold_jax.networks import dropout
from gold_jax.networks.gpt import TransformerConfig

_N = 1 << 20


def _within(value: float, expected: float, n: int, p: float, sigmas: float = 5.0) -> bool:
  return abs(value - expected) <= sigmas * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize('rate', [0.1, 0.5])
def test_keep_rate(rate):
  keep = np.asarray(dropout.keep_mask(jax.random.key(0), rate, (_N,)))
  assert _within(keep.mean(), 1 - rate, _N, rate)


def test_bits_are_uniform_and_independent():
  bits = np.asarray(dropout.hash_bits(jax.random.key(1), (1024, 1024))).reshape(-1)
  # Every bit position is set half the time.
  per_bit = ((bits[:, None] >> np.arange(32, dtype=np.uint32)) & 1).mean(axis=0)
  assert all(_within(f, 0.5, bits.size, 0.5) for f in per_bit), per_bit
  # Neighbours (along the flat index and along rows) are uncorrelated.
  u = bits.astype(np.float64) / 2**32
  grid = u.reshape(1024, 1024)
  for a, b in ((u[:-1], u[1:]), (grid[:-1].ravel(), grid[1:].ravel())):
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(a.size)


def test_keys_give_independent_masks():
  k1, k2 = jax.random.split(jax.random.key(2))
  a = np.asarray(dropout.keep_mask(k1, 0.5, (_N,)))
  np.testing.assert_array_equal(a, np.asarray(dropout.keep_mask(k1, 0.5, (_N,))))
  b = np.asarray(dropout.keep_mask(k2, 0.5, (_N,)))
  assert _within((a == b).mean(), 0.5, _N, 0.5)
  # Not a shifted copy either (the weakness of a single hash round of index + seed).
  for shift in (1, 2, 3, 64):
    assert _within((a[shift:] == b[:-shift]).mean(), 0.5, _N - shift, 0.5)


def test_mask_depends_on_index_not_on_layout():
  key = jax.random.key(3)
  flat = dropout.hash_bits(key, (6 * 5 * 4,))
  np.testing.assert_array_equal(dropout.hash_bits(key, (6, 5, 4)).reshape(-1), flat)


def test_bad_rate_refused():
  with pytest.raises(ValueError, match='dropout rate'):
    dropout.keep_mask(jax.random.key(0), 1.0, (4,))


def test_module_scales_kept_elements_and_is_identity_when_deterministic():
  x = jnp.ones((256, 512))
  module = dropout.HashDropout(0.25)
  out = module.apply({}, x, deterministic=False, rngs={'dropout': jax.random.key(4)})
  chex.assert_shape(out, x.shape)
  values = np.unique(np.asarray(out))
  np.testing.assert_allclose(values, [0.0, 1 / 0.75], rtol=1e-6)
  assert abs(float(out.mean()) - 1.0) < 0.02  # Inverted dropout keeps the expectation.
  np.testing.assert_array_equal(module.apply({}, x, deterministic=True), x)
  np.testing.assert_array_equal(
      dropout.HashDropout(0.0).apply({}, x, deterministic=False,
                                     rngs={'dropout': jax.random.key(4)}), x)


def test_dt_config_validates_and_both_impls_train():
  with pytest.raises(ValueError, match='dropout_impl'):
    TransformerConfig(act_dim=2, dropout_impl='philox')
  losses = {}
  for impl in ('hash', 'threefry'):
    config = dt.Config(embed_dim=16, num_layers=1, mlp_dim=32, context_len=4, dropout_rate=0.3,
                       dropout_impl=impl, learning_rate=3e-3, warmup_steps=1)
    state = dt.init(jax.random.key(0), 3, 2, config)
    window = dt.Segment(
        obs=jnp.ones((8, 4, 3)), action=jnp.full((8, 4, 2), 0.5), rtg=jnp.ones((8, 4)),
        ctg=jnp.zeros((8, 4)), timestep=jnp.tile(jnp.arange(4, dtype=jnp.int32), (8, 1)),
        mask=jnp.ones((8, 4)))
    a = dt.predict_actions(state, state.params, window, training=True,
                           dropout_key=jax.random.key(1))
    b = dt.predict_actions(state, state.params, window, training=True,
                           dropout_key=jax.random.key(2))
    assert not np.allclose(a, b), impl  # Dropout is active in training ...
    np.testing.assert_array_equal(  # ... and off when acting.
        dt.predict_actions(state, state.params, window),
        dt.predict_actions(state, state.params, window))
    for _ in range(60):
      state, metrics = dt.update(state, window)
    losses[impl] = float(metrics['loss/action'])
  assert max(losses.values()) < 0.05, losses
