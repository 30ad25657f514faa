"""Matrix products with bfloat16 inputs and float32 accumulation (mixed precision).

`bf16_dot_general` is a drop-in `dot_general` for flax layers (`nn.Dense(dot_general=...)`,
`nn.MultiHeadDotProductAttention(qkv_dot_general=..., out_dot_general=...)`): both operands are
rounded to bfloat16, the products are summed in float32 and the result is float32, in the
forward pass and in both products of the backward pass (the incoming gradient is rounded to
bfloat16 too). Parameters, optimiser, normalisation, softmax and residual sums stay float32.
On CPUs with AVX512-BF16 (AMD Zen 4, Intel Sapphire Rapids and later) XLA runs these products
at about twice the float32 rate; on GPUs and TPUs they run on the bfloat16 matrix units.
The price is bfloat16's 8-bit mantissa in the products' inputs (relative rounding 2^-9).
"""

import math

import jax
from jax import lax
import jax.numpy as jnp

_BF16 = jnp.bfloat16
_F32 = jnp.float32
MATMUL_DTYPES = ('float32', 'bfloat16')  # The choices of a config's `matmul_dtype`.


@jax.custom_vjp
def _matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  return _forward(x, w)[0]


def _forward(x, w):
  xb, wb = x.astype(_BF16), w.astype(_BF16)
  return jnp.dot(xb, wb, preferred_element_type=_F32), (xb, wb)


def _backward(residuals, g):
  xb, wb = residuals
  gb = g.astype(_BF16)
  return (jnp.dot(gb, wb.T, preferred_element_type=_F32),
          jnp.dot(xb.T, gb, preferred_element_type=_F32))


_matmul.defvjp(_forward, _backward)


def bf16_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """(m, k) @ (k, n) -> (m, n) float32, from bfloat16-rounded inputs (float32 gradients)."""
  return _matmul(x.astype(_F32), w.astype(_F32))


def bf16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """`lax.dot_general` through `bf16_matmul` when it contracts the trailing axes of `lhs` with
  the leading axes of `rhs` (dense layers, attention projections); float32 otherwise."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  k = len(lhs_contract)
  if (lhs_batch or rhs_batch or tuple(lhs_contract) != tuple(range(lhs.ndim - k, lhs.ndim))
      or tuple(rhs_contract) != tuple(range(k))):
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type)
  outer, inner = lhs.shape[:lhs.ndim - k], math.prod(lhs.shape[lhs.ndim - k:])
  out = bf16_matmul(lhs.reshape(-1, inner), rhs.reshape(inner, -1))
  return out.reshape(*outer, *rhs.shape[k:])


def dot_general_for(matmul_dtype: str):
  """The `dot_general` for a config's `matmul_dtype`: None (flax's float32 default) or bf16."""
  if matmul_dtype == 'float32':
    return None
  if matmul_dtype == 'bfloat16':
    return bf16_dot_general
  raise ValueError(f"matmul_dtype must be 'float32' or 'bfloat16', got {matmul_dtype!r}")
