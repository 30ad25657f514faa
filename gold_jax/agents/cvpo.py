"""CVPO: Constrained Variational Policy Optimization (Liu et al., 2022) in one jitted update.

Each update
1. Critics: twin reward and twin cost Q networks regress onto
     y = r + γ (1 − terminated) E_{a' ~ π(s')}[min_j Q̄_r,j(s', a')]   (cost: max_j, or mean_j),
   with `num_target_samples` next actions from the current policy and target critics Q̄. With
   `n_step` > 1 the loop samples n-step transitions (`types.NStepTransition`: r and c summed
   over up to n steps of one episode) and γ becomes their own γ^k.
2. E-step: `num_samples` actions per state from the prior π_old (the target policy) are scored
   by the target critics; the convex dual in (η, λ) is minimised exactly by nested bisection
   (cvpo_ops.solve_dual) within η ≤ `dual_max`, λ ≤ `lambda_max`; the non-parametric policy
   puts weights softmax_a((Q_r − λ Q_c) / η) on the samples.
3. M-step: `m_steps` Adam steps on the weighted log-likelihood, averaged over samples and
   states, with decoupled KL penalties on mean and std; before each step the multipliers α_μ,
   α_Σ take a projected gradient step on the bounds at the current KL, and the policy gradient
   is clipped to global norm `max_grad_norm` (the reference's order and clip).
4. Polyak averaging of the target critics (`tau`) and of the prior policy (`policy_tau`).

Two named presets (`PRESETS`, `preset(name, **overrides)`): 'released', the defaults, from the
CVPO authors' released code (liuzuxin/cvpo-safe-rl, script/config/config_cvpo.yaml and
safe_rl/policy/cvpo.py), and 'fsrl', FSRL's CVPO (liuzuxin/FSRL, fsrl/config/cvpo_cfg.py
TrainCfg, the configuration of SafetyCarCircle-v0). Each field's comment names its source. The
policy keeps `hidden_dims` in both (GOLD's student is a 2x256 MLP); `critic_hidden_dims` sets
the critics.

Actions are Gaussian samples clipped to [-1, 1], what the environment executes and the buffer
stores; the E-step scores and the M-step fits the same clipped samples. (Fitting unclipped
samples lets the weighted mean leave [-1, 1], where the critics are flat, and drives the tanh
mean into saturation, where its gradient vanishes for good.)
"""

import dataclasses
import functools
from typing import NamedTuple, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import optax

from gold_jax.agents import cvpo_ops
from gold_jax.agents.common import (acting_view, as_batch, check_batch, make_sharded_update_n,
                                    make_update_fns, soft_update)
from gold_jax.distributions import gaussian_sample, policy_action
from gold_jax.networks.policies import GaussianPolicy
from gold_jax.networks.values import QEnsemble
from gold_jax.types import Metrics, NStepTransition, Params, PRNGKey, Transition

_REDUCE = {'min': jnp.min, 'max': jnp.max, 'mean': jnp.mean}


@dataclasses.dataclass(frozen=True)
class Config:
  """The 'released' preset: each default's source beside it ("released": cvpo-safe-rl's
  config_cvpo.yaml or safe_rl/policy/cvpo.py; "ours" where this implementation decides). The
  loop settings of that configuration: batch 300 (the loop's `batch_size`), and 40 passes over
  each collected batch of episodes, 40 / 300 ≈ 0.13 updates per env step (the loop's `utd`).
  Set the budget and T from the task (TaskSpec.cost_threshold, max_episode_steps)."""
  hidden_dims: Tuple[int, ...] = (256, 256)  # policy widths (released hidden_sizes; GOLD's
                                             # student is 2x256 in every preset)
  critic_hidden_dims: Optional[Tuple[int, ...]] = None  # Q network widths; None: hidden_dims
                                                        # (released: the same 256-256)
  critic_lr: float = 1e-3                    # critics' Adam learning rate (released critic_lr)
  policy_lr: float = 2e-3                    # M-step Adam learning rate (released actor_lr)
  max_grad_norm: float = 0.01                # clip of the policy gradient's global norm at each
                                             # M-step (released clip_grad_norm_; 0: no clip)
  discount: float = 0.99                     # γ for reward and cost (released gamma)
  n_step: int = 1                            # TD steps of the critic targets (released: 1)
  tau: float = 0.005                         # Polyak rate of the target critics (released
                                             # polyak 0.995)
  policy_tau: float = 0.005                  # Polyak rate of the prior policy π_old (released:
                                             # polyak 0.995 on the target actor; 1.0: copy)
  num_qs: int = 2                            # critics per signal (released num_q 2 for reward;
                                             # ours also twin for cost, released num_qc 1)
  cost_reduce: str = 'max'                   # twin cost critics -> one value (ours): 'max'
                                             # (pessimistic, the mirror of min) or 'mean'
  num_target_samples: int = 1                # next actions per state in the TD target
                                             # (released: one sample of the current policy)
  num_samples: int = 32                      # M: actions per state from π_old in the E-step
                                             # (released sample_action_num)
  estep_kl: float = 0.1                      # ε: bound on E_s KL(q || π_old) (released
                                             # dual_constraint)
  dual_steps: int = 20                       # bisection halvings per E-step dual variable
                                             # (ours: the released code runs 10 SLSQP steps)
  eta_min: float = 1e-6                      # lower bound on η (released SLSQP bound)
  dual_max: float = 1e5                      # upper bound on η (released SLSQP bound)
  lambda_max: float = 20.0                   # upper bound on λ (FSRL estep_dual_max; the
                                             # released code bounds it only at 1e5)
  m_steps: int = 6                           # M-step gradient steps per update (released
                                             # mstep_iteration_num)
  kl_mean: float = 1e-3                      # ε_μ: bound on the mean part of KL(π_old || π)
                                             # (released kl_mean_constraint)
  kl_std: float = 1e-3                       # ε_Σ: bound on the std part of KL(π_old || π)
                                             # (released kl_var_constraint)
  alpha_mean_lr: float = 1.0                 # step size of α_μ (released alpha_mean_scale)
  alpha_std_lr: float = 100.0                # step size of α_Σ (released alpha_var_scale)
  alpha_mean_max: float = 0.1                # upper clip of α_μ (released alpha_mean_max)
  alpha_std_max: float = 10.0                # upper clip of α_Σ (released alpha_var_max)
  cost_limit_start: float = 10.0             # per-episode cost budget at update 0 (released
                                             # cost_limit; the task's κ in practice)
  cost_limit_end: float = 10.0               # per-episode cost budget after the decay
  cost_decay_steps: int = 0                  # updates of linear decay start -> end (0: end;
                                             # released use_cost_decay False)
  episode_len: int = 1000                    # T: Q_c threshold = budget (1 − γ^T) / ((1 − γ) T)
                                             # (released timeout_steps; the task's in practice)
  updates_per_step: Optional[float] = None   # updates per env step the preset was run at, the
                                             # launcher's utd when none is given (None: the
                                             # launcher's default; 40 / 300 fits no train_every)


# FSRL's CVPO for SafetyCarCircle-v0 (fsrl/config/cvpo_cfg.py TrainCfg; fsrl/policy/cvpo.py):
# the prior is the policy of the previous update (actor_old copied after each update), one
# M-step without a gradient clip, M-step multipliers capped at mstep_dual_max, the E-step dual
# capped at estep_dual_max (FSRL takes one Adam step on it per update and scores the samples
# with the current critics; here it is solved within the same caps on the target critics), one
# critic per signal, batch 256.
_FSRL = dict(
    critic_hidden_dims=(128, 128),  # hidden_sizes
    critic_lr=1e-3,                 # critic_lr
    policy_lr=5e-4,                 # actor_lr
    max_grad_norm=0.0,              # no clip
    discount=0.97,                  # gamma
    n_step=2,                       # n_step
    tau=0.05,                       # tau
    policy_tau=1.0,                 # actor_old <- actor after each update
    num_qs=1,                       # double_critic False
    num_target_samples=1,           # one next action of the actor
    num_samples=16,                 # sample_act_num
    estep_kl=0.02,                  # estep_kl
    dual_max=20.0,                  # estep_dual_max (η)
    lambda_max=20.0,                # estep_dual_max (λ)
    m_steps=1,                      # mstep_iter_num
    kl_mean=0.005,                  # mstep_kl_mu
    kl_std=0.0005,                  # mstep_kl_std
    alpha_mean_lr=0.1,              # mstep_dual_lr (there an Adam step)
    alpha_std_lr=0.1,               # mstep_dual_lr
    alpha_mean_max=0.5,             # mstep_dual_max
    alpha_std_max=0.5,              # mstep_dual_max
    updates_per_step=0.2,           # update_per_step
)

PRESETS = {'released': Config(), 'fsrl': Config(**_FSRL)}


def preset(name: str, **overrides) -> Config:
  """The named preset (`PRESETS`) with `overrides` replaced; an unknown name raises ValueError."""
  if name not in PRESETS:
    raise ValueError(f'unknown CVPO preset {name!r}; expected one of {tuple(PRESETS)}')
  return dataclasses.replace(PRESETS[name], **overrides)


class Duals(NamedTuple):
  """M-step multipliers carried between updates (float32 scalars). The E-step duals (η, λ) are
  solved exactly for every batch (cvpo_ops.solve_dual) and reported in the metrics."""
  alpha_mean: jax.Array  # multiplier of the mean KL bound
  alpha_std: jax.Array   # multiplier of the std KL bound


# The State fields that acting reads (see `common.acting_view`).
ACTING_FIELDS = ('policy_params',)


@flax.struct.dataclass
class State:
  policy_params: Params
  policy_opt_state: optax.OptState
  target_policy_params: Params   # π_old: E-step prior and M-step KL anchor
  critic_params: Params          # {'reward': ..., 'cost': ...}, each a QEnsemble
  critic_opt_state: optax.OptState
  target_critic_params: Params
  duals: Duals
  rng: PRNGKey
  step: jax.Array
  obs_dim: int = flax.struct.field(pytree_node=False)
  act_dim: int = flax.struct.field(pytree_node=False)
  config: Config = flax.struct.field(pytree_node=False)


def _policy(config: Config, act_dim: int) -> GaussianPolicy:
  return GaussianPolicy(config.hidden_dims, act_dim, tanh_mean=True)


def _critic(config: Config) -> QEnsemble:
  return QEnsemble(config.critic_hidden_dims or config.hidden_dims, num_qs=config.num_qs)


def _optimizers(config: Config):
  """(policy, critic) optimizers: Adam, the policy's after a global-norm clip if one is set."""
  policy_opt = optax.adam(config.policy_lr)
  if config.max_grad_norm > 0:
    policy_opt = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), policy_opt)
  return policy_opt, optax.adam(config.critic_lr)


def cost_limits(config: Config, step) -> Tuple[jax.Array, jax.Array]:
  """(per-episode budget, Q_c threshold) at update `step` (linear decay, cvpo_ops docs)."""
  limit = cvpo_ops.linear_schedule(step, config.cost_limit_start, config.cost_limit_end,
                                   config.cost_decay_steps)
  return limit, cvpo_ops.episode_cost_to_q(limit, config.discount, config.episode_len)


def init(key: PRNGKey, obs_dim: int, act_dim: int, config: Config = Config()) -> State:
  if config.cost_reduce not in ('max', 'mean'):
    raise ValueError(f"cost_reduce must be 'max' or 'mean', got {config.cost_reduce!r}")
  if config.n_step < 1 or config.m_steps < 1:
    raise ValueError(f'n_step and m_steps must be >= 1, got {config.n_step}, {config.m_steps}')
  if not config.eta_min < config.dual_max or not 1e-6 < config.lambda_max:
    raise ValueError(f'need eta_min < dual_max and lambda_max > 1e-6, got {config.eta_min}, '
                     f'{config.dual_max}, {config.lambda_max}')
  policy_key, reward_key, cost_key, rng = jax.random.split(key, 4)
  obs, action = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
  policy_params = _policy(config, act_dim).init(policy_key, obs)
  critic = _critic(config)
  critic_params = {'reward': critic.init(reward_key, obs, action),
                   'cost': critic.init(cost_key, obs, action)}
  policy_opt, critic_opt = _optimizers(config)
  scalar = lambda x: jnp.asarray(x, jnp.float32)
  copy = lambda tree: jax.tree.map(jnp.copy, tree)  # own buffers: update_n donates the state
  return State(
      policy_params=policy_params,
      policy_opt_state=policy_opt.init(policy_params),
      target_policy_params=copy(policy_params),
      critic_params=critic_params,
      critic_opt_state=critic_opt.init(critic_params),
      target_critic_params=copy(critic_params),
      duals=Duals(scalar(0.0), scalar(0.0)),
      rng=rng,
      step=jnp.zeros((), jnp.int32),
      obs_dim=obs_dim,
      act_dim=act_dim,
      config=config)


def _sample_actions(key, mean, log_std, n: int) -> jax.Array:
  """`n` Gaussian samples per state, clipped to [-1, 1]: `(n, B, act_dim)`."""
  samples = gaussian_sample(key, jnp.broadcast_to(mean, (n, *mean.shape)),
                            jnp.broadcast_to(log_std, (n, *log_std.shape)))
  return jnp.clip(samples, -1.0, 1.0)


def _score(critic, params, obs, actions, reduce: str) -> jax.Array:
  """Twin critics at `(n, B)` actions, combined by `reduce` -> `(n, B)`."""
  obs = jnp.broadcast_to(obs, (*actions.shape[:-1], obs.shape[-1]))
  return _REDUCE[reduce](critic.apply(params, obs, actions), axis=0)


def critic_loss(critic_params, critic: QEnsemble, batch: Transition, target_r, target_c):
  """Mean squared TD error of every twin against its target, for reward and for cost."""
  q_r = critic.apply(critic_params['reward'], batch.obs, batch.action)  # (num_qs, B)
  q_c = critic.apply(critic_params['cost'], batch.obs, batch.action)
  loss_r = jnp.mean((q_r - target_r) ** 2)
  loss_c = jnp.mean((q_c - target_c) ** 2)
  return loss_r + loss_c, {'loss/critic_r': loss_r, 'loss/critic_c': loss_c,
                           'training/q_r_mean': q_r.mean(), 'training/q_c_mean': q_c.mean()}


def _update_critics(state: State, batch: Transition, key):
  config = state.config
  policy, critic = _policy(config, state.act_dim), _critic(config)
  _, critic_opt = _optimizers(config)
  mean, log_std = policy.apply(state.policy_params, batch.next_obs)
  next_actions = _sample_actions(key, mean, log_std, config.num_target_samples)
  next_r = _score(critic, state.target_critic_params['reward'], batch.next_obs, next_actions,
                  'min').mean(0)
  next_c = _score(critic, state.target_critic_params['cost'], batch.next_obs, next_actions,
                  config.cost_reduce).mean(0)
  # An n-step batch carries each transition's own γ^k (k <= n steps summed).
  discount = batch.discount if isinstance(batch, NStepTransition) else config.discount
  bootstrap = discount * (1.0 - batch.terminated)
  target_r = batch.reward + bootstrap * next_r
  target_c = batch.cost + bootstrap * next_c
  grads, info = jax.grad(lambda p: critic_loss(p, critic, batch, target_r, target_c),
                         has_aux=True)(state.critic_params)
  updates, opt_state = critic_opt.update(grads, state.critic_opt_state, state.critic_params)
  return optax.apply_updates(state.critic_params, updates), opt_state, info


def _e_step(state: State, obs, key):
  """Samples from π_old, the dual solution on their target-critic values, and the weights.

  Reports the E-step KL(q || π_old) (`training/kl_q`, = ε unless η sits at a bound) and
  E_q[Q_c] (`training/q_c_q`, <= the Q_c threshold unless the limit is infeasible).
  """
  config = state.config
  policy, critic = _policy(config, state.act_dim), _critic(config)
  mean_old, log_std_old = policy.apply(state.target_policy_params, obs)
  actions = _sample_actions(key, mean_old, log_std_old, config.num_samples)  # (M, B, A)
  q_r = _score(critic, state.target_critic_params['reward'], obs, actions, 'min')
  q_c = _score(critic, state.target_critic_params['cost'], obs, actions, config.cost_reduce)
  limit, q_limit = cost_limits(config, state.step)
  eta, lam = cvpo_ops.solve_dual(q_r, q_c, config.estep_kl, q_limit, config.dual_steps,
                                 config.eta_min, config.dual_max, lam_max=config.lambda_max)
  weights = cvpo_ops.estep_weights(q_r, q_c, eta, lam)
  kl_q, cost_q = cvpo_ops.kl_and_cost(eta, lam, q_r, q_c)
  info = {'loss/dual': cvpo_ops.dual_function(eta, lam, q_r, q_c, config.estep_kl, q_limit),
          'training/eta': eta, 'training/lambda': lam, 'training/kl_q': kl_q,
          'training/q_c_q': cost_q, 'training/cost_limit': limit,
          'training/q_cost_limit': q_limit}
  return (actions, weights, mean_old, log_std_old), info


def _m_step(state: State, obs, actions, weights, mean_old, log_std_old):
  """`m_steps` Adam steps on the KL-penalised weighted MLE. Each step first moves α_μ, α_Σ on
  the KL of the current policy, then takes the clipped gradient step with them (the reference's
  order). Reports the KL to π_old after the M-step (`training/kl_*`) and the KL between the
  policy before and after it (`training/step_kl_*`), each averaged over states."""
  config = state.config
  policy = _policy(config, state.act_dim)
  policy_opt, _ = _optimizers(config)

  def loss_fn(params, alpha_mean, alpha_std):
    mean, log_std = policy.apply(params, obs)
    nll = cvpo_ops.weighted_mle_loss(weights, actions, mean, log_std, mean_old, log_std_old)
    kl_mean, kl_std = cvpo_ops.decoupled_gaussian_kl(mean_old, log_std_old, mean, log_std)
    kl_mean, kl_std = kl_mean.mean(), kl_std.mean()
    alpha_mean = cvpo_ops.update_kl_multiplier(alpha_mean, kl_mean, config.kl_mean,
                                               config.alpha_mean_lr, config.alpha_mean_max)
    alpha_std = cvpo_ops.update_kl_multiplier(alpha_std, kl_std, config.kl_std,
                                              config.alpha_std_lr, config.alpha_std_max)
    return nll + alpha_mean * kl_mean + alpha_std * kl_std, (alpha_mean, alpha_std)

  def step(carry, _):
    params, opt_state, alpha_mean, alpha_std = carry
    (loss, (alpha_mean, alpha_std)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, alpha_mean, alpha_std)
    updates, opt_state = policy_opt.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, opt_state, alpha_mean, alpha_std), (loss, optax.tree.norm(grads))

  carry = (state.policy_params, state.policy_opt_state, state.duals.alpha_mean,
           state.duals.alpha_std)
  (params, opt_state, alpha_mean, alpha_std), (losses, grad_norms) = jax.lax.scan(
      step, carry, None, length=config.m_steps)
  mean, log_std = policy.apply(params, obs)
  mean_before, log_std_before = policy.apply(state.policy_params, obs)
  kl_mean, kl_std = cvpo_ops.decoupled_gaussian_kl(mean_old, log_std_old, mean, log_std)
  step_kl_mean, step_kl_std = cvpo_ops.decoupled_gaussian_kl(mean_before, log_std_before, mean,
                                                             log_std)
  info = {'loss/policy': losses.mean(), 'training/kl_mean': kl_mean.mean(),
          'training/kl_std': kl_std.mean(), 'training/step_kl_mean': step_kl_mean.mean(),
          'training/step_kl_std': step_kl_std.mean(), 'training/alpha_mean': alpha_mean,
          'training/alpha_std': alpha_std, 'training/policy_grad_norm': grad_norms.mean(),
          'training/policy_std': jnp.exp(log_std).mean()}
  return params, opt_state, (alpha_mean, alpha_std), info


def _update_step(state: State, batch: Transition) -> Tuple[State, Metrics]:
  check_batch(batch, state.obs_dim, state.act_dim)
  config = state.config
  rng, target_key, sample_key = jax.random.split(state.rng, 3)
  critic_params, critic_opt_state, critic_info = _update_critics(state, batch, target_key)
  samples, estep_info = _e_step(state, batch.obs, sample_key)
  policy_params, policy_opt_state, (alpha_mean, alpha_std), mstep_info = _m_step(
      state, batch.obs, *samples)
  new_state = state.replace(
      policy_params=policy_params,
      policy_opt_state=policy_opt_state,
      target_policy_params=soft_update(state.target_policy_params, policy_params,
                                       config.policy_tau),
      critic_params=critic_params,
      critic_opt_state=critic_opt_state,
      target_critic_params=soft_update(state.target_critic_params, critic_params, config.tau),
      duals=Duals(alpha_mean, alpha_std),
      rng=rng,
      step=state.step + 1)
  return new_state, {**critic_info, **estep_info, **mstep_info}


update, update_n = make_update_fns(_update_step)


def make_sharded_update(mesh):
  """`update_n` data-parallel over `mesh` (`common.make_sharded_update_n`): the state
  replicated, each stacked batch (k, batch, ...) split on its batch axis."""
  return make_sharded_update_n(_update_step, mesh, batch_axis=1)


def act(state: State, obs: jax.Array, key: PRNGKey, deterministic: bool = False) -> jax.Array:
  """Policy mean if `deterministic`, else a Gaussian sample clipped to [-1, 1]."""
  return _act(acting_view(state, *ACTING_FIELDS), obs, key, deterministic=deterministic)


@functools.partial(jax.jit, static_argnames='deterministic')
def _act(state: State, obs: jax.Array, key: PRNGKey, deterministic: bool) -> jax.Array:
  obs, single = as_batch(obs)
  mean, log_std = _policy(state.config, state.act_dim).apply(state.policy_params, obs)
  action = policy_action(key, mean, log_std, deterministic, squash=False)
  return action[0] if single else action
