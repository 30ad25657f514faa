"""Decision Transformer (Chen et al., 2021): the offline guide of GOLD (Li et al., 2023).

Trained by regressing the demonstrated actions from K-step windows of (return-to-go, obs,
action) tokens (`gold_jax.data.segments`). It acts through a fixed-shape rolling context, so one
compiled program serves every step of every episode:

  ctx = init_context(state, target_return)           # or n=num_envs for a vector env
  action, ctx = act_context(state, ctx, obs)         # pushes obs and the current return-to-go
  ctx = observe(ctx, action_taken, reward, cost)     # the action actually taken (may be the
                                                     # student's); lowers return/cost-to-go
  ctx = reset_context(state, ctx, done, target_return)   # vector envs: restart finished slots

The context holds the last K steps, left-padded with mask 0 like the training windows. Unlike
the other learners there is no `act(state, obs, key, deterministic)`: an action depends on the
history, so acting always goes through a context (and is deterministic). Observations are
normalised inside the model with `obs_mean` / `obs_std` given to `init` (the dataset's).
"""

import dataclasses
from typing import Optional, Tuple

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gold_jax.agents import common
from gold_jax.data.segments import Segment
from gold_jax.networks.gpt import DecisionTransformer, TransformerConfig
from gold_jax.types import Metrics, Params, PRNGKey


@dataclasses.dataclass(frozen=True)
class Config:
  """Defaults of the released GOLD guide (a GPT with 3 layers, 1 head)."""
  embed_dim: int = 128  # Token width.
  num_layers: int = 3  # Transformer blocks.
  num_heads: int = 1  # Attention heads.
  mlp_dim: int = 512  # Inner width of each block's MLP.
  dropout_rate: float = 0.1  # Dropout in the transformer while training.
  context_len: int = 20  # K: steps per window, training and acting.
  max_timestep: int = 1000  # Size of the timestep embedding (episode length).
  use_cost_token: bool = False  # Also condition on the cost-to-go (4 tokens per step).
  learning_rate: float = 1e-4  # AdamW peak learning rate.
  weight_decay: float = 1e-4  # AdamW decoupled weight decay (all parameters).
  warmup_steps: int = 10000  # Linear learning-rate warm-up from lr / warmup_steps to lr.
  grad_clip: float = 0.25  # Global gradient-norm clip.
  batch_size: int = 64  # Windows per update (used by the training loop).
  return_scale: float = 10.0  # Returns-to-go are divided by this.
  cost_scale: float = 10.0  # Costs-to-go are divided by this.
  # 'bfloat16': the transformer's matrix products take bfloat16-rounded inputs and sum in
  # float32 (mixed precision; about 2x the float32 matrix rate on CPUs with AVX512-BF16 and on
  # accelerators); parameters and optimiser stay float32.
  matmul_dtype: str = 'float32'
  # Token-dropout masks: 'hash' (a counter hash, cheap on CPUs) or 'threefry' (flax's).
  dropout_impl: str = 'hash'

  def transformer(self, act_dim: int) -> TransformerConfig:
    return TransformerConfig(
        act_dim=act_dim, embed_dim=self.embed_dim, num_layers=self.num_layers,
        num_heads=self.num_heads, mlp_dim=self.mlp_dim, dropout_rate=self.dropout_rate,
        max_timestep=self.max_timestep, use_cost_token=self.use_cost_token,
        matmul_dtype=self.matmul_dtype, dropout_impl=self.dropout_impl)


@flax.struct.dataclass
class State:
  params: Params
  opt_state: optax.OptState
  obs_mean: jax.Array  # (obs_dim,) observation normaliser.
  obs_std: jax.Array  # (obs_dim,)
  rng: PRNGKey  # Dropout key of update `step` is fold_in(rng, step).
  step: jax.Array  # int32 number of updates done.
  config: Config = flax.struct.field(pytree_node=False)


@flax.struct.dataclass
class Context:
  """Rolling acting context of n environments: the last K steps, left-padded."""
  window: Segment  # Fields (n, K, ...); rtg/ctg scaled like the training windows.
  rtg: jax.Array  # (n,) scaled return-to-go for the next step.
  ctg: jax.Array  # (n,) scaled cost-to-go for the next step.
  timestep: jax.Array  # (n,) int32 timestep of the next step.
  config: Config = flax.struct.field(pytree_node=False)
  single: bool = flax.struct.field(pytree_node=False)  # True: one env, unbatched obs/actions.


def make_optimizer(config: Config) -> optax.GradientTransformation:
  """Clip, then AdamW with a linear warm-up schedule as its learning rate."""
  return optax.chain(
      optax.clip_by_global_norm(config.grad_clip),
      optax.adamw(learning_rate_schedule(config), weight_decay=config.weight_decay))


def learning_rate_schedule(config: Config) -> optax.Schedule:
  """lr * min((step + 1) / warmup_steps, 1), as in the original Decision Transformer."""
  if config.warmup_steps <= 1:
    return optax.constant_schedule(config.learning_rate)
  return optax.linear_schedule(config.learning_rate / config.warmup_steps,
                               config.learning_rate, config.warmup_steps - 1)


def _model(config: Config, act_dim: int) -> DecisionTransformer:
  return DecisionTransformer(config.transformer(act_dim))


def init(key: PRNGKey, obs_dim: int, act_dim: int, config: Config = Config(),
         obs_mean: Optional[np.ndarray] = None, obs_std: Optional[np.ndarray] = None) -> State:
  """A fresh learner; `obs_mean` / `obs_std` (default 0 / 1) normalise observations."""
  model_key, rng = jax.random.split(key)
  k = config.context_len
  params = _model(config, act_dim).init(
      model_key, jnp.zeros((1, k, obs_dim)), jnp.zeros((1, k, act_dim)), jnp.zeros((1, k)),
      jnp.zeros((1, k)), jnp.zeros((1, k), jnp.int32))['params']
  mean = jnp.zeros(obs_dim) if obs_mean is None else jnp.asarray(obs_mean, jnp.float32)
  std = jnp.ones(obs_dim) if obs_std is None else jnp.asarray(obs_std, jnp.float32)
  chex.assert_shape([mean, std], (obs_dim,))
  return State(params=params, opt_state=make_optimizer(config).init(params), obs_mean=mean,
               obs_std=std, rng=rng, step=jnp.zeros((), jnp.int32), config=config)


def num_params(params: Params) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def predict_actions(state: State, params: Params, window: Segment, training: bool = False,
                    dropout_key: Optional[PRNGKey] = None) -> jax.Array:
  """Actions predicted at every step of `window` (batch, K, act_dim)."""
  return _predict(state.config, params, state.obs_mean, state.obs_std, window, training,
                  dropout_key)


def _predict(config: Config, params: Params, obs_mean: jax.Array, obs_std: jax.Array,
             window: Segment, training: bool = False,
             dropout_key: Optional[PRNGKey] = None, outputs: str = 'all') -> jax.Array:
  """Actions predicted for the window, (B, K, act_dim); `outputs='last'`: (B, 1, act_dim)."""
  obs = (window.obs - obs_mean) / obs_std
  rngs = {'dropout': dropout_key} if training else None
  return _model(config, window.action.shape[-1]).apply(
      {'params': params}, obs, window.action, window.rtg, window.ctg, window.timestep,
      window.mask, training=training, rngs=rngs, outputs=outputs)


def action_loss(predicted: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean squared action error over the valid (mask 1) steps of the windows (GOLD Eq. 2).

  predicted, target: (B, K, act_dim); mask: (B, K). The mean runs over valid steps and action
  dimensions, as in the original Decision Transformer.
  """
  chex.assert_equal_shape([predicted, target])
  chex.assert_equal_shape_prefix([predicted, mask], 2)
  squared = jnp.sum((predicted - target) ** 2, axis=-1)
  return jnp.sum(squared * mask) / (jnp.maximum(jnp.sum(mask), 1.0) * target.shape[-1])


def check_segment(segment: Segment, obs_dim: int, act_dim: int, context_len: int) -> None:
  """Trace-time shape and dtype checks of a training window batch."""
  b = segment.rtg.shape[0]
  shapes = dict(obs=(b, context_len, obs_dim), action=(b, context_len, act_dim),
                rtg=(b, context_len), ctg=(b, context_len), timestep=(b, context_len),
                mask=(b, context_len))
  for name, shape in shapes.items():
    value = getattr(segment, name)
    if tuple(value.shape) != shape:
      raise ValueError(f'segment field {name!r}: expected shape {shape}, got {value.shape}')
  chex.assert_type([segment.obs, segment.action, segment.rtg, segment.ctg, segment.mask],
                   jnp.float32)
  chex.assert_type(segment.timestep, jnp.int32)


def _update_step(state: State, segment: Segment) -> Tuple[State, Metrics]:
  config = state.config
  check_segment(segment, state.obs_mean.shape[0], segment.action.shape[-1], config.context_len)
  dropout_key = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    predicted = predict_actions(state, params, segment, training=True, dropout_key=dropout_key)
    return action_loss(predicted, segment.action, segment.mask)

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  updates, opt_state = make_optimizer(config).update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {'loss/action': loss, 'training/grad_norm': optax.tree.norm(grads),
             'training/learning_rate': learning_rate_schedule(config)(state.step)}
  return state.replace(params=params, opt_state=opt_state, step=state.step + 1), metrics


update, update_n = common.make_update_fns(_update_step)
update.__doc__ = 'One gradient step on a batch of windows (batch, K, ...): (state, metrics).'
update_n.__doc__ = 'k steps fused by lax.scan over windows stacked (k, batch, K, ...); donates.'


def make_sharded_update(mesh: jax.sharding.Mesh):
  """`update_n` run data-parallel over `mesh`: state replicated, windows split on the batch axis.

  The batch must divide by the number of devices. Place inputs with `parallel.replicate` and
  `parallel.shard_batch(segments, mesh, batch_axis=1)` to avoid a copy on every call.
  """
  return common.make_sharded_update_n(_update_step, mesh, batch_axis=1)


# --- Acting ------------------------------------------------------------------------------


def init_context(state: State, target_return, n: Optional[int] = None,
                 target_cost=0.0) -> Context:
  """An empty context aiming at `target_return` (and `target_cost`): one env, or n of them."""
  config = state.config
  size, k = 1 if n is None else n, config.context_len
  obs_dim, act_dim = state.obs_mean.shape[0], state.params['action_head']['bias'].shape[0]
  window = Segment(obs=jnp.zeros((size, k, obs_dim)), action=jnp.zeros((size, k, act_dim)),
                   rtg=jnp.zeros((size, k)), ctg=jnp.zeros((size, k)),
                   timestep=jnp.zeros((size, k), jnp.int32), mask=jnp.zeros((size, k)))
  as_vector = lambda x, scale: jnp.broadcast_to(jnp.asarray(x, jnp.float32) / scale, (size,))
  return Context(window=window, rtg=as_vector(target_return, config.return_scale),
                 ctg=as_vector(target_cost, config.cost_scale),
                 timestep=jnp.zeros(size, jnp.int32), config=config, single=n is None)


def _push(x: jax.Array, new: jax.Array) -> jax.Array:
  return jnp.concatenate([x[:, 1:], new[:, None].astype(x.dtype)], axis=1)


@jax.jit
def _act_context(params: Params, obs_mean: jax.Array, obs_std: jax.Array, ctx: Context,
                 obs: jax.Array) -> Tuple[jax.Array, Context]:
  w = ctx.window
  size = w.rtg.shape[0]
  obs = obs.reshape(size, -1)
  window = Segment(obs=_push(w.obs, obs), action=_push(w.action, jnp.zeros_like(w.action[:, 0])),
                   rtg=_push(w.rtg, ctx.rtg), ctg=_push(w.ctg, ctx.ctg),
                   timestep=_push(w.timestep, ctx.timestep), mask=_push(w.mask, jnp.ones(size)))
  action = _predict(ctx.config, params, obs_mean, obs_std, window, outputs='last')[:, -1]
  return (action[0] if ctx.single else action), ctx.replace(window=window)


def act_context(state: State, ctx: Context, obs) -> Tuple[jax.Array, Context]:
  """Pushes `obs` (with the current return-to-go) into the window and returns the action.

  `obs` is `(obs_dim,)` for a single-env context, `(n, obs_dim)` otherwise; deterministic.
  Call `observe` with the action taken before the next `act_context`.
  """
  return _act_context(state.params, state.obs_mean, state.obs_std, ctx, common.host_input(obs))


@jax.jit
def _observe(ctx: Context, action: jax.Array, reward: jax.Array, cost: jax.Array) -> Context:
  size = ctx.rtg.shape[0]
  window = ctx.window._replace(
      action=ctx.window.action.at[:, -1].set(action.reshape(size, -1)))
  return ctx.replace(window=window,
                     rtg=ctx.rtg - reward.reshape(size) / ctx.config.return_scale,
                     ctg=ctx.ctg - cost.reshape(size) / ctx.config.cost_scale,
                     timestep=ctx.timestep + 1)


def observe(ctx: Context, action, reward, cost) -> Context:
  """Records the action actually taken at the last pushed step and its reward and cost."""
  return _observe(ctx, common.host_input(action), common.host_input(reward),
                  common.host_input(cost))


def reset_context(state: State, ctx: Context, done, target_return, target_cost=0.0) -> Context:
  """Empties the contexts of the envs where `done` (n,) is true (vector envs autoreset)."""
  fresh = init_context(state, target_return, None if ctx.single else ctx.rtg.shape[0],
                       target_cost)
  done = jnp.asarray(done, bool).reshape(-1)

  def pick(new, old):
    return jnp.where(done.reshape((-1,) + (1,) * (old.ndim - 1)), new, old)

  return jax.tree.map(pick, fresh, ctx)
