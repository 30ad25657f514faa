"""Shared types: the transition batch every learner consumes."""

from typing import Any, Dict, NamedTuple

import jax

PRNGKey = jax.Array
Params = Any
Metrics = Dict[str, jax.Array]


class Transition(NamedTuple):
  """A batch of transitions, leading axis = batch (or `(k, batch)` for `update_n`).

  All fields are float32. `terminated` is 1.0 where `next_obs` is terminal, so targets
  bootstrap with `1 - terminated` (Gymnasium semantics: truncation still bootstraps).
  """
  obs: jax.Array
  action: jax.Array
  reward: jax.Array
  cost: jax.Array
  next_obs: jax.Array
  terminated: jax.Array


class NStepTransition(NamedTuple):
  """A `Transition` summed over up to n steps of one episode (`ReplayBuffer.sample_stacked`
  with `n_step` > 1): `reward` and `cost` are Σ_{i<k} γ^i r_{t+i} over the k <= n steps taken
  (fewer where the episode ends or the stored data does), `next_obs` and `terminated` are those
  of step t+k−1, and `discount` is γ^k, so targets bootstrap with `discount * (1 - terminated)`.
  """
  obs: jax.Array
  action: jax.Array
  reward: jax.Array
  cost: jax.Array
  next_obs: jax.Array
  terminated: jax.Array
  discount: jax.Array
