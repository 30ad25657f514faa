"""Pieces every learner shares: batch checks, fused updates, target updates, NaN reports."""

import dataclasses
from typing import Callable, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gold_jax.types import Metrics, Transition


def check_batch(batch: Transition, obs_dim: int, act_dim: int) -> None:
  """Trace-time shape and dtype checks; the failing field is named in the error."""
  n = batch.obs.shape[0]
  expected = {
      'obs': (n, obs_dim), 'action': (n, act_dim), 'reward': (n,), 'cost': (n,),
      'next_obs': (n, obs_dim), 'terminated': (n,)}
  for name, shape in expected.items():
    value = getattr(batch, name)
    if tuple(value.shape) != shape:
      raise ValueError(f'batch field {name!r}: expected shape {shape}, got {tuple(value.shape)}')
    if value.dtype != jnp.float32:
      raise TypeError(f'batch field {name!r}: expected float32, got {value.dtype}')


def scan_updates(update_step: Callable, state, batches, unroll: int = 1
                 ) -> Tuple[object, Metrics]:
  """Runs `update_step` over the leading axis of `batches` with `lax.scan`; mean metrics.

  `unroll` updates share one loop iteration (any number of batches works).
  """
  state, metrics = jax.lax.scan(update_step, state, batches, unroll=unroll)
  return state, jax.tree.map(jnp.mean, metrics)


def make_update_fns(update_step: Callable, unroll: int = 1):
  """Returns `(update, update_n)`: one jitted update and `k` fused updates (state donated).

  `unroll` is `scan_updates`' (a learner sets what its benchmark measured fastest).
  """
  update = jax.jit(update_step)
  update_n = jax.jit(lambda state, batches: scan_updates(update_step, state, batches, unroll),
                     donate_argnums=0)
  return update, update_n


def make_sharded_update_n(update_step: Callable, mesh, batch_axis: int = 1, unroll: int = 1):
  """`update_n` run data-parallel over `mesh`'s 'data' axis (`gold_jax.parallel.make_mesh`).

  The state is replicated; the stacked batches are split along `batch_axis` (1: the batch
  axis after the leading update axis), which must divide by the number of devices. Every
  device computes its share of each update; the compiler adds the cross-device sums, so the
  result is the single-device update up to float rounding. Place the inputs with
  `parallel.replicate(state, mesh)` and `parallel.shard_batch(batches, mesh, batch_axis)` to
  avoid a copy on every call. Useful on a CPU too: XLA:CPU runs matrix products of these
  sizes on one core, while `GOLD_JAX_CPU_DEVICES=N` (`gold_jax.runtime`) gives N devices.
  """
  from gold_jax import parallel  # pylint: disable=g-import-not-at-top
  replicated = parallel.replicated(mesh)
  batch = parallel.batch_sharded(mesh, batch_axis)
  return jax.jit(lambda state, batches: scan_updates(update_step, state, batches, unroll),
                 in_shardings=(replicated, batch), out_shardings=(replicated, replicated),
                 donate_argnums=0)


def soft_update(target, online, tau: float):
  """Polyak averaging: target <- tau * online + (1 - tau) * target."""
  return optax.incremental_update(online, target, tau)


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
  """Asymmetric L2: |tau - 1(diff < 0)| * diff^2 (IQL, Eq. 5). Elementwise."""
  chex.assert_type(diff, float)
  weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
  return weight * diff**2


def check_finite(metrics: Metrics, step: int) -> None:
  """Raises FloatingPointError naming every non-finite metric and the step it appeared at."""
  bad = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(np.asarray(v))))
  if bad:
    raise FloatingPointError(f'non-finite values in {", ".join(bad)} at update step {step}')


def host_input(x, dtype=np.float32):
  """`x` ready to pass to a jitted function: a jax array as it is, anything else as numpy.

  A jitted call transfers numpy arguments with its own dispatch; `jnp.asarray` on host data
  is a separate transfer that costs more than a small policy's whole forward pass on a CPU
  (about 0.1 to 0.4 ms per call).
  """
  return x if isinstance(x, jax.Array) else np.asarray(x, dtype)


def as_batch(obs: jax.Array) -> Tuple[jax.Array, bool]:
  """Adds a batch axis to a single observation; returns whether it did."""
  if obs.ndim == 1:
    return obs[None], True
  return obs, False


def acting_view(state, *keep: str):
  """`state` with every array field but `keep` set to None (static fields stay).

  A jitted call flattens all of its arguments on every dispatch: acting with the whole state
  (optimiser moments, critics, targets) costs several times the actor's own compute for a
  single observation. Acting functions take this view, a few leaves, instead.
  """
  drop = {f.name: None for f in dataclasses.fields(state)
          if f.name not in keep and f.metadata.get('pytree_node', True)}
  return state.replace(**drop)
