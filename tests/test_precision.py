"""bfloat16 matrix products with float32 sums: values, gradients and the routing of dot_general."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gold_jax.networks import precision


def test_matmul_rounds_inputs_to_bfloat16_and_sums_in_float32():
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 64))
  w = jax.random.normal(jax.random.PRNGKey(1), (64, 16))
  out = precision.bf16_matmul(x, w)
  assert out.dtype == jnp.float32
  rounded = np.asarray(x.astype(jnp.bfloat16), np.float64) @ np.asarray(
      w.astype(jnp.bfloat16), np.float64)
  np.testing.assert_allclose(out, rounded, rtol=1e-5, atol=1e-4)  # Exact products, f32 sums.
  exact = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
  assert 1e-4 < np.max(np.abs(out - exact)) / np.max(np.abs(exact)) < 2e-2  # bf16 rounding.


def test_gradients_are_the_float32_ones_up_to_bfloat16_rounding():
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 32))
  w = jax.random.normal(jax.random.PRNGKey(1), (32, 4))
  loss = lambda mm: lambda x, w: jnp.sum(jnp.sin(mm(x, w)))
  gx, gw = jax.grad(loss(precision.bf16_matmul), argnums=(0, 1))(x, w)
  fx, fw = jax.grad(loss(jnp.dot), argnums=(0, 1))(x, w)
  assert gx.dtype == gw.dtype == jnp.float32
  for got, want in ((gx, fx), (gw, fw)):
    np.testing.assert_allclose(got, want, atol=0.05 * float(jnp.max(jnp.abs(want))))


def test_dot_general_routes_dense_contractions_and_falls_back_otherwise():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 8))
  w = jax.random.normal(jax.random.PRNGKey(1), (8, 2, 5))  # An attention projection's kernel.
  dense = (((2,), (0,)), ((), ()))
  out = precision.bf16_dot_general(x, w, dense)
  assert out.shape == (2, 3, 2, 5)
  np.testing.assert_allclose(out, jax.lax.dot_general(x, w, dense), rtol=2e-2, atol=5e-2)
  jaxpr = str(jax.make_jaxpr(lambda a, b: precision.bf16_dot_general(a, b, dense))(x, w))
  assert 'bf16' in jaxpr
  batched = (((2,), (1,)), ((0,), (0,)))  # Batch dimensions: the float32 product.
  y = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 4))
  jaxpr = str(jax.make_jaxpr(lambda a, b: precision.bf16_dot_general(a, b, batched))(x, y))
  assert 'bf16' not in jaxpr
  with pytest.raises(ValueError, match="matmul_dtype must be 'float32' or 'bfloat16'"):
    precision.dot_general_for('float16')
