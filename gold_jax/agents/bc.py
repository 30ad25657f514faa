"""Behaviour cloning: a deterministic MLP policy regressed onto demonstrated actions.

The simpler offline guide GOLD compares with the Decision Transformer. Observations are
normalised inside the policy with `obs_mean` / `obs_std` given to `init` (the dataset's).
"""

import dataclasses
from typing import Optional, Sequence, Tuple

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gold_jax.agents import common
from gold_jax.networks.policies import DeterministicPolicy
from gold_jax.types import Metrics, Params, PRNGKey, Transition


@dataclasses.dataclass(frozen=True)
class Config:
  hidden_dims: Sequence[int] = (256, 256)  # Policy MLP widths (the student's architecture).
  learning_rate: float = 1e-3  # Adam step size.
  dropout_rate: float = 0.0  # Dropout between hidden layers while training.
  batch_size: int = 256  # Transitions per update (used by the training loop).


# The State fields that acting reads (see `common.acting_view`).
ACTING_FIELDS = ('params', 'obs_mean', 'obs_std')


@flax.struct.dataclass
class State:
  params: Params
  opt_state: optax.OptState
  obs_mean: jax.Array  # (obs_dim,) observation normaliser.
  obs_std: jax.Array  # (obs_dim,)
  rng: PRNGKey  # Dropout key of update `step` is fold_in(rng, step).
  step: jax.Array  # int32 number of updates done.
  config: Config = flax.struct.field(pytree_node=False)


def _policy(config: Config, act_dim: int) -> DeterministicPolicy:
  return DeterministicPolicy(tuple(config.hidden_dims), act_dim, config.dropout_rate)


def init(key: PRNGKey, obs_dim: int, act_dim: int, config: Config = Config(),
         obs_mean: Optional[np.ndarray] = None, obs_std: Optional[np.ndarray] = None) -> State:
  """A fresh learner; `obs_mean` / `obs_std` (default 0 / 1) normalise observations."""
  model_key, rng = jax.random.split(key)
  params = _policy(config, act_dim).init(model_key, jnp.zeros((1, obs_dim)))['params']
  mean = jnp.zeros(obs_dim) if obs_mean is None else jnp.asarray(obs_mean, jnp.float32)
  std = jnp.ones(obs_dim) if obs_std is None else jnp.asarray(obs_std, jnp.float32)
  chex.assert_shape([mean, std], (obs_dim,))
  return State(params=params, opt_state=optax.adam(config.learning_rate).init(params),
               obs_mean=mean, obs_std=std, rng=rng, step=jnp.zeros((), jnp.int32),
               config=config)


def _apply(state: State, params: Params, obs: jax.Array, training: bool = False,
           dropout_key: Optional[PRNGKey] = None) -> jax.Array:
  act_dim = params['Dense_0']['bias'].shape[0]
  rngs = {'dropout': dropout_key} if training else None
  return _policy(state.config, act_dim).apply(
      {'params': params}, (obs - state.obs_mean) / state.obs_std, training=training, rngs=rngs)


def bc_loss(predicted: jax.Array, target: jax.Array) -> jax.Array:
  """Mean squared error E ||pi(s) - a||^2 / act_dim over the batch (predicted: (B, act_dim))."""
  chex.assert_equal_shape([predicted, target])
  return jnp.mean((predicted - target) ** 2)


def _update_step(state: State, batch: Transition) -> Tuple[State, Metrics]:
  common.check_batch(batch, state.obs_mean.shape[0], batch.action.shape[-1])
  dropout_key = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    return bc_loss(_apply(state, params, batch.obs, True, dropout_key), batch.action)

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  updates, opt_state = optax.adam(state.config.learning_rate).update(grads, state.opt_state)
  params = optax.apply_updates(state.params, updates)
  metrics = {'loss/action': loss, 'training/grad_norm': optax.tree.norm(grads)}
  return state.replace(params=params, opt_state=opt_state, step=state.step + 1), metrics


update, update_n = common.make_update_fns(_update_step)
update.__doc__ = 'One gradient step on a Transition batch: (state, metrics).'
update_n.__doc__ = 'k steps fused by lax.scan over Transitions stacked (k, batch, ...); donates.'


def make_sharded_update(mesh):
  """`update_n` data-parallel over `mesh` (`common.make_sharded_update_n`): the state
  replicated, each stacked batch (k, batch, ...) split on its batch axis."""
  return common.make_sharded_update_n(_update_step, mesh, batch_axis=1)


@jax.jit
def _act(state: State, obs: jax.Array) -> jax.Array:
  obs, single = common.as_batch(obs)
  action = _apply(state, state.params, obs)
  return action[0] if single else action


def act(state: State, obs, key: Optional[PRNGKey] = None,
        deterministic: bool = True) -> jax.Array:
  """The policy's action for `obs` `(obs_dim,)` or `(n, obs_dim)`; always deterministic."""
  del key, deterministic  # The policy has no noise.
  return _act(common.acting_view(state, *ACTING_FIELDS), common.host_input(obs))
