"""Implicit Q-Learning (Kostrikov et al. 2021), GOLD's online learner (Li et al. 2023).

Critic: twin Q with Polyak targets and a state value V fitted by expectile regression on the
minimum target Q at dataset actions (Eq. 5); Q regresses to r_λ + γ (1 − d) V(s') (Eq. 6), where
r_λ = r − λ c is GOLD's shaped reward. Two actors (`Config.actor_loss`):

- 'awr' (IQL paper): advantage-weighted regression of dataset actions, weights
  min(exp(β (Q̂ − V)), 100) (Eq. 7), Gaussian actor with tanh mean and state-independent log std.
  Default expectile 0.7.
- 'sac' (the GOLD authors' released code): SAC actor on min_i Q_i(s, ã) with a reparameterised
  tanh-Gaussian sample and automatic entropy tuning (target entropy −act_dim).
  Default expectile 0.8.

λ (`Config.multiplier`, a `lagrange.Config`) is `multiplier.value` unless `multiplier.rule` is
'lagrange' or 'pid': then λ starts at that value and follows the rule
of `lagrange` on the cost of the student's own steps. The training loop records, per finished
episode, the cost incurred after the guide handed over and the number of student steps, and calls
`update_lambda(state, episode_cost)` with the student's cost rate over its recent episodes scaled
to the episode length; λ steps toward an episode cost of `cost_target · cost_limit`. The guide's
steps, which fill most of the buffer early on, do not move λ. The shaped reward uses the current λ.
"""

import dataclasses
import functools
from typing import Callable, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import optax

from gold_jax import configs, distributions
from gold_jax.agents import common, iql_losses, lagrange, sac
from gold_jax.networks.policies import GaussianPolicy
from gold_jax.networks.values import QEnsemble, StateValue
from gold_jax.types import Metrics, Params, PRNGKey, Transition

ACTOR_LOSSES = ('awr', 'sac')
DEFAULT_EXPECTILE = {'awr': 0.7, 'sac': 0.8}


@dataclasses.dataclass(frozen=True)
class Config:
  hidden_dims: Tuple[int, ...] = (256, 256)  # Hidden layers of actor, critics and values.
  actor_lr: float = 3e-4    # Adam step size of the actor.
  critic_lr: float = 3e-4   # Adam step size of the Q ensembles.
  value_lr: float = 3e-4    # Adam step size of the state values.
  actor_lr_decay_steps: Optional[int] = None  # Cosine decay of the actor step size over this
                                              # many updates (IQL offline); None keeps it constant.
  discount: float = 0.99    # γ.
  tau: float = 0.005        # Polyak rate of the target Q ensembles.
  num_qs: int = 2           # Q networks per ensemble (twin Q).
  actor_loss: str = 'awr'   # 'awr' (IQL paper) or 'sac' (GOLD authors' code).
  expectile: Optional[float] = None  # τ of the value regression; None -> 0.7 (awr) / 0.8 (sac).
  temperature: float = 3.0  # AWR inverse temperature β.
  max_weight: float = 100.0  # Clip of the AWR weight exp(β A).
  init_alpha: float = 1.0   # 'sac' actor: initial entropy temperature α.
  alpha_lr: float = 3e-4    # 'sac' actor: Adam step size of log α.
  target_entropy: Optional[float] = None  # 'sac' actor: entropy target; None -> −act_dim.
  # λ of the shaped reward r − λ c: fixed (the paper), or adapted to the student's measured
  # episode cost against cost_limit.
  multiplier: lagrange.Config = lagrange.Config(rule='fixed', value=1.0)
  cost_limit: float = 25.0  # Per-episode cost limit κ (adapted λ only).

  def __post_init__(self):  # Lists and dicts (from JSON or flags) become tuples and configs.
    configs.coerce(self)


@flax.struct.dataclass
class Critic:
  """A Q ensemble with its Polyak target and the state value fitted to it."""
  q_params: Params
  q_opt_state: optax.OptState
  target_q_params: Params
  v_params: Params
  v_opt_state: optax.OptState


# The State fields that acting reads (see `common.acting_view`).
ACTING_FIELDS = ('actor_params',)


@flax.struct.dataclass
class State:
  actor_params: Params
  actor_opt_state: optax.OptState
  critic: Critic                  # On the shaped reward r − λ c.
  log_alpha: Optional[jax.Array]  # 'sac' actor only.
  alpha_opt_state: Optional[optax.OptState]
  multiplier: Optional[lagrange.Multiplier]  # Adapted λ; None when the rule is 'fixed'.
  rng: PRNGKey
  step: jax.Array
  obs_dim: int = flax.struct.field(pytree_node=False)
  act_dim: int = flax.struct.field(pytree_node=False)
  config: Config = flax.struct.field(pytree_node=False)


def expectile(config: Config) -> float:
  """The value expectile τ in use: `config.expectile`, or the default of the actor loss."""
  return DEFAULT_EXPECTILE[config.actor_loss] if config.expectile is None else config.expectile


def current_lambda(state: State) -> jax.Array:
  """λ of the shaped reward: the adaptive multiplier, or the fixed `multiplier.value`."""
  if state.multiplier is None:
    return jnp.asarray(state.config.multiplier.value, jnp.float32)
  return state.multiplier.value


def _validate(config: Config) -> None:
  if config.actor_loss not in ACTOR_LOSSES:
    raise ValueError(f'actor_loss must be one of {ACTOR_LOSSES}, got {config.actor_loss!r}')
  if not 0 < expectile(config) < 1:
    raise ValueError(f'expectile must be in (0, 1), got {expectile(config)}')
  if config.init_alpha <= 0:
    raise ValueError(f'init_alpha must be > 0, got {config.init_alpha}')
  lagrange.validate(config.multiplier)
  if config.cost_limit < 0:
    raise ValueError(f'cost_limit must be >= 0, got {config.cost_limit}')


def _networks(config: Config, act_dim: int):
  if config.actor_loss == 'awr':
    actor = GaussianPolicy(config.hidden_dims, act_dim, tanh_mean=True, state_dependent_std=False)
  else:
    actor = GaussianPolicy(config.hidden_dims, act_dim)
  return actor, QEnsemble(config.hidden_dims, num_qs=config.num_qs), StateValue(config.hidden_dims)


def _optimizers(config: Config):
  actor_lr = config.actor_lr
  if config.actor_lr_decay_steps:
    actor_lr = optax.cosine_decay_schedule(config.actor_lr, config.actor_lr_decay_steps)
  return (optax.adam(actor_lr), optax.adam(config.critic_lr), optax.adam(config.value_lr),
          optax.adam(config.alpha_lr))


def _init_critic(key: PRNGKey, config: Config, obs: jax.Array, action: jax.Array) -> Critic:
  _, q_net, v_net = _networks(config, action.shape[-1])
  _, q_tx, v_tx, _ = _optimizers(config)
  k_q, k_v = jax.random.split(key)
  q_params = q_net.init(k_q, obs, action)['params']
  v_params = v_net.init(k_v, obs)['params']
  return Critic(q_params=q_params, q_opt_state=q_tx.init(q_params),
                target_q_params=jax.tree.map(jnp.copy, q_params),  # Own buffers: donated.
                v_params=v_params, v_opt_state=v_tx.init(v_params))


def init(key: PRNGKey, obs_dim: int, act_dim: int, config: Config = Config()) -> State:
  _validate(config)
  actor, _, _ = _networks(config, act_dim)
  actor_tx, _, _, alpha_tx = _optimizers(config)
  key, k_actor, k_critic = jax.random.split(key, 3)
  obs = jnp.zeros((1, obs_dim), jnp.float32)
  action = jnp.zeros((1, act_dim), jnp.float32)
  actor_params = actor.init(k_actor, obs)['params']
  log_alpha = alpha_opt_state = multiplier = None
  if config.actor_loss == 'sac':
    log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
    alpha_opt_state = alpha_tx.init(log_alpha)
  if lagrange.adapts(config.multiplier):
    multiplier = lagrange.init(config.multiplier.value, config.multiplier)
  return State(
      actor_params=actor_params, actor_opt_state=actor_tx.init(actor_params),
      critic=_init_critic(k_critic, config, obs, action),
      log_alpha=log_alpha, alpha_opt_state=alpha_opt_state, multiplier=multiplier,
      rng=key, step=jnp.zeros((), jnp.int32), obs_dim=obs_dim, act_dim=act_dim, config=config)


def _update_critic(critic: Critic, batch: Transition, reward: jax.Array, tau_expectile: float,
                   reduce: Callable, config: Config, act_dim: int) -> Tuple[Critic, dict]:
  """Expectile step on V (Eq. 5), then TD step on Q toward r + γ (1 − d) V(s') (Eq. 6)."""
  _, q_net, v_net = _networks(config, act_dim)
  _, q_tx, v_tx, _ = _optimizers(config)
  target_q = reduce(q_net.apply({'params': critic.target_q_params}, batch.obs, batch.action))

  def v_loss_fn(params):
    v = v_net.apply({'params': params}, batch.obs)
    return iql_losses.value_loss(target_q, v, tau_expectile), v

  (v_loss, v), grads = jax.value_and_grad(v_loss_fn, has_aux=True)(critic.v_params)
  updates, v_opt_state = v_tx.update(grads, critic.v_opt_state)
  v_params = optax.apply_updates(critic.v_params, updates)

  next_v = v_net.apply({'params': v_params}, batch.next_obs)
  target = iql_losses.td_target(reward, batch.terminated, next_v, config.discount)

  def q_loss_fn(params):
    q = q_net.apply({'params': params}, batch.obs, batch.action)
    return sac.q_loss(q, target), q

  (q_loss, q), grads = jax.value_and_grad(q_loss_fn, has_aux=True)(critic.q_params)
  updates, q_opt_state = q_tx.update(grads, critic.q_opt_state)
  q_params = optax.apply_updates(critic.q_params, updates)

  new = Critic(q_params=q_params, q_opt_state=q_opt_state,
               target_q_params=common.soft_update(critic.target_q_params, q_params, config.tau),
               v_params=v_params, v_opt_state=v_opt_state)
  return new, {'q_loss': q_loss, 'v_loss': v_loss, 'q': q.mean(), 'v': v, 'target_q': target_q}


def _update_awr_actor(state: State, batch: Transition, critic_info: dict, critic: Critic):
  """Advantage-weighted regression on dataset actions with A = min_i Q̄_i(s, a) − V(s) (Eq. 7)."""
  config = state.config
  actor, _, v_net = _networks(config, state.act_dim)
  actor_tx = _optimizers(config)[0]
  advantage = critic_info['target_q'] - v_net.apply({'params': critic.v_params}, batch.obs)

  def loss_fn(params):
    mean, log_std = actor.apply({'params': params}, batch.obs)
    log_prob = distributions.gaussian_log_prob(mean, log_std, batch.action)
    return iql_losses.awr_actor_loss(log_prob, advantage, config.temperature, config.max_weight)

  loss, grads = jax.value_and_grad(loss_fn)(state.actor_params)
  updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)
  weight = jnp.minimum(jnp.exp(config.temperature * advantage), config.max_weight)
  return (state.replace(actor_params=optax.apply_updates(state.actor_params, updates),
                        actor_opt_state=actor_opt_state),
          {'loss/actor': loss, 'training/adv_mean': advantage.mean(),
           'training/awr_weight_mean': weight.mean()})


def _update_sac_actor(state: State, batch: Transition, critic_info: dict, critic: Critic,
                      key: PRNGKey):
  """SAC actor on min_i Q_i(s, ã) of the updated critic, then the entropy temperature α."""
  config = state.config
  actor, q_net, _ = _networks(config, state.act_dim)
  actor_tx, _, _, alpha_tx = _optimizers(config)
  alpha = jnp.exp(state.log_alpha)

  def loss_fn(params):
    mean, log_std = actor.apply({'params': params}, batch.obs)
    action, log_prob = distributions.tanh_gaussian_sample(key, mean, log_std)
    q = q_net.apply({'params': critic.q_params}, batch.obs, action).min(0)
    return sac.actor_loss(log_prob, q, alpha), (log_prob, q)

  (loss, (log_prob, q)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.actor_params)
  updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state, state.actor_params)

  target_entropy = (-float(state.act_dim) if config.target_entropy is None
                    else config.target_entropy)
  alpha_loss, alpha_grad = jax.value_and_grad(
      lambda log_alpha: sac.temperature_loss(jnp.exp(log_alpha), log_prob, target_entropy))(
          state.log_alpha)
  alpha_updates, alpha_opt_state = alpha_tx.update(alpha_grad, state.alpha_opt_state)
  return (state.replace(actor_params=optax.apply_updates(state.actor_params, updates),
                        actor_opt_state=actor_opt_state,
                        log_alpha=optax.apply_updates(state.log_alpha, alpha_updates),
                        alpha_opt_state=alpha_opt_state),
          {'loss/actor': loss, 'loss/alpha': alpha_loss, 'training/alpha': alpha,
           'training/entropy': -log_prob.mean(),
           'training/adv_mean': jnp.mean(q - critic_info['v'])})


def _update_step(state: State, batch: Transition) -> Tuple[State, Metrics]:
  common.check_batch(batch, state.obs_dim, state.act_dim)
  config = state.config
  key, k_actor = jax.random.split(state.rng)
  lam = current_lambda(state)

  # Critic of the shaped reward, pessimistic over the ensemble (min).
  reward = iql_losses.shaped_reward(batch.reward, batch.cost, lam)
  critic, info = _update_critic(state.critic, batch, reward, expectile(config),
                                lambda q: q.min(0), config, state.act_dim)
  metrics = {'loss/critic': info['q_loss'], 'loss/value': info['v_loss'],
             'training/q_mean': info['q'], 'training/v_mean': info['v'].mean(),
             'training/shaped_reward_mean': reward.mean(), 'training/lambda': lam}

  if config.actor_loss == 'awr':
    state, actor_info = _update_awr_actor(state, batch, info, critic)
  else:
    state, actor_info = _update_sac_actor(state, batch, info, critic, k_actor)
  metrics.update(actor_info)
  new_state = state.replace(critic=critic, rng=key, step=state.step + 1)
  return new_state, metrics


# Two updates per scan iteration: about 10% more updates/s for IQL on a 2-core CPU (no gain
# for SAC or CVPO; experiments/bench_learners.py).
update, update_n = common.make_update_fns(_update_step, unroll=2)


def adapts_lambda(config: Config) -> bool:
  """Whether the training loop should feed the student's episode costs to `update_lambda`."""
  return lagrange.adapts(config.multiplier)


@jax.jit
def update_lambda(state: State, episode_cost: jax.Array) -> Tuple[State, Metrics]:
  """One step of λ toward the episode cost `cost_target · cost_limit`, given the student's
  measured cost over its own steps scaled to a whole episode (`lagrange.update`)."""
  multiplier, metrics = lagrange.update_from_episode_cost(
      state.multiplier, episode_cost, state.config.multiplier, state.config.cost_limit)
  return state.replace(multiplier=multiplier), metrics


def make_sharded_update(mesh):
  """`update_n` data-parallel over `mesh` (`common.make_sharded_update_n`): the state
  replicated, each stacked batch (k, batch, ...) split on its batch axis."""
  return common.make_sharded_update_n(_update_step, mesh, batch_axis=1, unroll=2)


def act(state: State, obs: jax.Array, key: PRNGKey, deterministic: bool = False) -> jax.Array:
  """Mean action (tanh'ed for 'sac') if deterministic, else a sample clipped to [-1, 1]."""
  return _act(common.acting_view(state, *ACTING_FIELDS), obs, key, deterministic=deterministic)


@functools.partial(jax.jit, static_argnames='deterministic')
def _act(state: State, obs: jax.Array, key: PRNGKey, deterministic: bool) -> jax.Array:
  obs, single = common.as_batch(obs)
  actor, _, _ = _networks(state.config, state.act_dim)
  mean, log_std = actor.apply({'params': state.actor_params}, obs)
  action = distributions.policy_action(key, mean, log_std, deterministic,
                                       squash=state.config.actor_loss == 'sac')
  return action[0] if single else action
