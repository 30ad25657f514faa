"""SAC-Lagrangian (Haarnoja et al. 2018; Ha et al. 2020), which trains the demonstrating experts.

Twin reward critic Q_r and twin cost critic Q_c with Polyak targets, a tanh-Gaussian actor with
automatic entropy tuning, and a cost multiplier λ ≥ 0. The actor maximises
E_{a~π}[min_i Q_r,i(s, a) − λ max(0, Q̂_c(s, a)) − α log π(a|s)], Q̂_c the twin's mean (or max).

λ is `Config.multiplier` (a `lagrange.Config`, as IQL's):
- rule 'lagrange' or 'pid': λ starts at `multiplier.value` and follows the rule of `lagrange` on
  the measured episode cost: the training loop calls `update_lambda(state, episode_cost)` with
  the mean cost of the recent training episodes, and λ steps toward an episode cost of
  `multiplier.cost_target · cost_limit` (a target below κ leaves a margin for the noise of the
  estimate), from env step `multiplier.start_step` on.
- rule 'fixed': λ = `multiplier.value` stays fixed. Because Q is linear in the reward,
  Q_r − λ Q_c is the value of the shaped reward r − λ c, so this is fixed-λ reward shaping.

The reward target is pessimistic (min over the twin). The cost twin is combined by
`cost_twin`: 'mean' (the default) or 'max' (pessimistic, as clipped double Q-learning is for
the reward), in the target and for the actor alike; either way Q_c is clipped at 0 (costs are
≥ 0). The actor minimises λ Q_c over its own actions, so it steers toward actions where the
cost critic underestimates, and those values bootstrap back. Measured with the laptop expert
(64×64, 4 updates per env step, seed 0):
- Point-Goal, mean twin, no clip: Q_c's mean on replayed actions fell to −7 within 15k env
  steps while episodes cost 35–50. With the clip: 0.3–1.0 over 50k steps while the replayed
  steps' discounted cost-to-go was about 8.5 (0.085 cost per step). With 'max': 6–12.
- Car-Circle, 'max': the kept expert scored 83.3 reward at cost 10.3 (κ 10) after 40k steps,
  where the mean twin gives experts of 222–324 at cost 0 on 3 seeds (docs/results/experts/).
"""

import dataclasses
import functools
from typing import Optional, Tuple

import chex
import flax
import jax
import jax.numpy as jnp
import optax

from gold_jax import configs, distributions
from gold_jax.agents import common, lagrange
from gold_jax.networks.policies import GaussianPolicy
from gold_jax.networks.values import QEnsemble
from gold_jax.types import Metrics, Params, PRNGKey, Transition


@dataclasses.dataclass(frozen=True)
class Config:
  hidden_dims: Tuple[int, ...] = (256, 256)  # Hidden layers of actor and critics.
  actor_lr: float = 3e-4    # Adam step size of the actor.
  critic_lr: float = 3e-4   # Adam step size of both critics.
  alpha_lr: float = 3e-4    # Adam step size of the entropy temperature (log α).
  discount: float = 0.99    # γ.
  tau: float = 0.005        # Polyak rate of the target critics.
  num_qs: int = 2           # Critics per ensemble (twin Q).
  init_alpha: float = 1.0   # Initial entropy temperature α.
  target_entropy: Optional[float] = None  # Entropy target; None -> −act_dim.
  # λ: adapted on measured episode costs ('lagrange', 'pid') or fixed (r − λ c shaping).
  multiplier: lagrange.Config = lagrange.Config(rule='lagrange', value=0.0)
  cost_limit: float = 25.0  # Per-episode cost limit κ.
  cost_twin: str = 'mean'   # How the cost twin combines, in the target and for the actor:
                            # 'mean', or 'max' (pessimistic).

  def __post_init__(self):  # Lists and dicts (from JSON or flags) become tuples and configs.
    configs.coerce(self)


# The State fields that acting reads (see `common.acting_view`).
ACTING_FIELDS = ('actor_params',)


@flax.struct.dataclass
class State:
  actor_params: Params
  actor_opt_state: optax.OptState
  critic_params: Params         # {'reward': twin Q_r, 'cost': twin Q_c}.
  critic_opt_state: optax.OptState
  target_critic_params: Params  # Polyak copies of `critic_params`.
  log_alpha: jax.Array
  alpha_opt_state: optax.OptState
  multiplier: lagrange.Multiplier
  rng: PRNGKey
  step: jax.Array
  obs_dim: int = flax.struct.field(pytree_node=False)
  act_dim: int = flax.struct.field(pytree_node=False)
  config: Config = flax.struct.field(pytree_node=False)


# ---------------------------------------------------------------------------- losses


def q_loss(q: jax.Array, target: jax.Array) -> jax.Array:
  """Σ_i E[(Q_i(s, a) − y)^2] over an ensemble `q` of shape (num_qs, B) (SAC, Eq. 5)."""
  chex.assert_rank(q, 2)
  chex.assert_equal_shape([q[0], target])
  return jnp.mean((q - jax.lax.stop_gradient(target))**2, axis=1).sum()


def soft_td_target(reward, cost, terminated, next_q, next_cost_q, next_log_prob, alpha,
                   discount) -> Tuple[jax.Array, jax.Array]:
  """Reward and cost targets, a' ~ π(·|s') (SAC, Eq. 3 and 5; the cost has no entropy bonus).

  y_r = r + γ (1 − d) (min_i Q̄_r,i(s', a') − α log π(a'|s')),
  y_c = c + γ (1 − d) max(0, Q̄_c(s', a')), Q̄_c the target twin's mean or max (`cost_twin`).
  """
  chex.assert_equal_shape([reward, cost, terminated, next_q, next_cost_q, next_log_prob])
  bootstrap = discount * (1.0 - terminated)
  return (reward + bootstrap * (next_q - alpha * next_log_prob),
          cost + bootstrap * jnp.maximum(next_cost_q, 0.0))


COST_TWINS = ('max', 'mean')


def _combine_cost(cost_q: jax.Array, how: str) -> jax.Array:
  """The cost twin (num_qs, B) as one estimate: its max (pessimistic) or its mean."""
  return cost_q.max(0) if how == 'max' else cost_q.mean(0)


def actor_loss(log_prob: jax.Array, q: jax.Array, alpha: jax.Array) -> jax.Array:
  """E[α log π(ã|s) − Q(s, ã)], ã ~ π reparameterised (SAC, Eq. 7); Q may be Q_r − λ Q_c."""
  chex.assert_equal_shape([log_prob, q])
  return jnp.mean(alpha * log_prob - q)


def temperature_loss(alpha: jax.Array, log_prob: jax.Array, target_entropy: float) -> jax.Array:
  """α · E[−log π(ã|s) − H̄] (SAC, Eq. 18): α grows while the entropy is below the target."""
  return alpha * jax.lax.stop_gradient(jnp.mean(-log_prob) - target_entropy)


# ---------------------------------------------------------------------------- learner


def _networks(config: Config, act_dim: int):
  actor = GaussianPolicy(config.hidden_dims, act_dim)
  critic = QEnsemble(config.hidden_dims, num_qs=config.num_qs)
  return actor, critic


def _optimizers(config: Config):
  return (optax.adam(config.actor_lr), optax.adam(config.critic_lr), optax.adam(config.alpha_lr))


def _target_entropy(config: Config, act_dim: int) -> float:
  return -float(act_dim) if config.target_entropy is None else config.target_entropy


def init(key: PRNGKey, obs_dim: int, act_dim: int, config: Config = Config()) -> State:
  lagrange.validate(config.multiplier)
  if config.cost_twin not in COST_TWINS:
    raise ValueError(f'cost_twin must be one of {COST_TWINS}, got {config.cost_twin!r}')
  if config.init_alpha <= 0:
    raise ValueError(f'init_alpha must be > 0, got {config.init_alpha}')
  if config.cost_limit < 0:
    raise ValueError(f'cost_limit must be >= 0, got {config.cost_limit}')
  actor, critic = _networks(config, act_dim)
  actor_tx, critic_tx, alpha_tx = _optimizers(config)
  key, k_actor, k_reward, k_cost = jax.random.split(key, 4)
  obs = jnp.zeros((1, obs_dim), jnp.float32)
  action = jnp.zeros((1, act_dim), jnp.float32)
  actor_params = actor.init(k_actor, obs)['params']
  critic_params = {'reward': critic.init(k_reward, obs, action)['params'],
                   'cost': critic.init(k_cost, obs, action)['params']}
  log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
  return State(
      actor_params=actor_params, actor_opt_state=actor_tx.init(actor_params),
      critic_params=critic_params, critic_opt_state=critic_tx.init(critic_params),
      target_critic_params=jax.tree.map(jnp.copy, critic_params),  # Own buffers: donated.
      log_alpha=log_alpha, alpha_opt_state=alpha_tx.init(log_alpha),
      multiplier=lagrange.init(config.multiplier.value, config.multiplier),
      rng=key, step=jnp.zeros((), jnp.int32),
      obs_dim=obs_dim, act_dim=act_dim, config=config)


def _update_step(state: State, batch: Transition) -> Tuple[State, Metrics]:
  common.check_batch(batch, state.obs_dim, state.act_dim)
  config = state.config
  actor, critic = _networks(config, state.act_dim)
  actor_tx, critic_tx, alpha_tx = _optimizers(config)
  key, k_next, k_actor = jax.random.split(state.rng, 3)
  alpha = jnp.exp(state.log_alpha)
  lam = state.multiplier.value

  # Critics: regress twin Q_r and twin Q_c on their targets.
  mean, log_std = actor.apply({'params': state.actor_params}, batch.next_obs)
  next_action, next_log_prob = distributions.tanh_gaussian_sample(k_next, mean, log_std)
  target = state.target_critic_params
  next_q = critic.apply({'params': target['reward']}, batch.next_obs, next_action).min(0)
  next_cost_q = _combine_cost(
      critic.apply({'params': target['cost']}, batch.next_obs, next_action), config.cost_twin)
  target_q, target_cost_q = soft_td_target(
      batch.reward, batch.cost, batch.terminated, next_q, next_cost_q, next_log_prob, alpha,
      config.discount)

  def critic_loss_fn(params):
    q = critic.apply({'params': params['reward']}, batch.obs, batch.action)
    cost_q = critic.apply({'params': params['cost']}, batch.obs, batch.action)
    reward_loss, cost_loss = q_loss(q, target_q), q_loss(cost_q, target_cost_q)
    return reward_loss + cost_loss, (reward_loss, cost_loss, q.mean(), cost_q.mean())

  grads, (reward_loss, cost_loss, q_mean, cost_q_mean) = jax.grad(
      critic_loss_fn, has_aux=True)(state.critic_params)
  updates, critic_opt_state = critic_tx.update(grads, state.critic_opt_state)
  critic_params = optax.apply_updates(state.critic_params, updates)

  # Actor on the Lagrangian value Q_r − λ Q_c of reparameterised actions.
  def actor_loss_fn(params):
    mean, log_std = actor.apply({'params': params}, batch.obs)
    action, log_prob = distributions.tanh_gaussian_sample(k_actor, mean, log_std)
    q = critic.apply({'params': critic_params['reward']}, batch.obs, action).min(0)
    cost_q = _combine_cost(critic.apply({'params': critic_params['cost']}, batch.obs, action),
                           config.cost_twin)
    # No reward for actions where Q_c extrapolates below the least possible cost.
    return actor_loss(log_prob, q - lam * jnp.maximum(cost_q, 0.0), alpha), (log_prob, cost_q)

  (loss_actor, (log_prob, policy_cost_q)), grads = jax.value_and_grad(
      actor_loss_fn, has_aux=True)(state.actor_params)
  updates, actor_opt_state = actor_tx.update(grads, state.actor_opt_state)
  actor_params = optax.apply_updates(state.actor_params, updates)

  # Entropy temperature.
  target_entropy = _target_entropy(config, state.act_dim)
  alpha_loss, alpha_grad = jax.value_and_grad(
      lambda log_alpha: temperature_loss(jnp.exp(log_alpha), log_prob, target_entropy))(
          state.log_alpha)
  updates, alpha_opt_state = alpha_tx.update(alpha_grad, state.alpha_opt_state)
  log_alpha = optax.apply_updates(state.log_alpha, updates)

  new_state = state.replace(
      actor_params=actor_params, actor_opt_state=actor_opt_state,
      critic_params=critic_params, critic_opt_state=critic_opt_state,
      target_critic_params=common.soft_update(state.target_critic_params, critic_params,
                                              config.tau),
      log_alpha=log_alpha, alpha_opt_state=alpha_opt_state, rng=key, step=state.step + 1)
  metrics = {
      'loss/critic': reward_loss, 'loss/cost_critic': cost_loss,
      'loss/actor': loss_actor, 'loss/alpha': alpha_loss,
      'training/q_mean': q_mean, 'training/qc_mean': cost_q_mean,
      'training/policy_qc_mean': policy_cost_q.mean(), 'training/alpha': alpha,
      'training/entropy': -jnp.mean(log_prob), 'training/lambda': lam}
  return new_state, metrics


update, update_n = common.make_update_fns(_update_step)


def adapts_lambda(config: Config) -> bool:
  """Whether the training loop should feed measured episode costs to `update_lambda`."""
  return lagrange.adapts(config.multiplier)


@jax.jit
def update_lambda(state: State, episode_cost: jax.Array) -> Tuple[State, Metrics]:
  """One step of λ toward the episode cost `cost_target · cost_limit`, given the measured mean
  episode cost of the recent training episodes (`lagrange.update`)."""
  multiplier, metrics = lagrange.update_from_episode_cost(
      state.multiplier, episode_cost, state.config.multiplier, state.config.cost_limit)
  return state.replace(multiplier=multiplier), metrics


def make_sharded_update(mesh):
  """`update_n` data-parallel over `mesh` (`common.make_sharded_update_n`): the state
  replicated, each stacked batch (k, batch, ...) split on its batch axis."""
  return common.make_sharded_update_n(_update_step, mesh, batch_axis=1)


def act(state: State, obs: jax.Array, key: PRNGKey, deterministic: bool = False) -> jax.Array:
  """tanh(mean) if deterministic, else a tanh-Gaussian sample; `obs` (obs_dim,) or (n, obs_dim)."""
  return _act(common.acting_view(state, *ACTING_FIELDS), obs, key, deterministic=deterministic)


@functools.partial(jax.jit, static_argnames='deterministic')
def _act(state: State, obs: jax.Array, key: PRNGKey, deterministic: bool) -> jax.Array:
  obs, single = common.as_batch(obs)
  actor, _ = _networks(state.config, state.act_dim)
  mean, log_std = actor.apply({'params': state.actor_params}, obs)
  action = distributions.policy_action(key, mean, log_std, deterministic, squash=True)
  return action[0] if single else action
