"""Lagrange multiplier λ ≥ 0 for a cost constraint, shared by IQL (adaptive λ) and SAC-Lagrangian.

The constrained problem max_π J_r(π) s.t. J_c(π) ≤ d is solved on the Lagrangian
J_r − λ (J_c − d) (Altman 1999; Ray et al. 2019). J_c is measured, not estimated by a critic: the
training loop (`gold_jax.loop.GuidedLoop`) records the cost of the learner's own steps in its
recent episodes and calls `learner.update_lambda(state, episode_cost)` once new episodes have
finished, as PID-Lagrangian implementations (FSRL, OmniSafe) do. Two rules, on episode costs:

- 'lagrange': projected gradient ascent on λ, i.e. descent on L(λ) = −λ (J_c − d) with Adam, then
  λ ← clip(λ, 0, max_value). λ is stored directly (not in log space) so that it reaches exactly 0
  once the constraint is slack; a log or softplus parameterisation only approaches 0.
- 'pid': PID Lagrangian (Stooke et al. 2020, Alg. 2): with e = J_c − d,
  I ← max(0, I + e), λ = clip(K_p e + K_i I + K_d max(0, e − e_prev), 0, max_value).

Cost limits are given per episode (κ, as in Safety-Gym style benchmarks); learners that compare a
discounted cost value with the budget (CVPO) convert it with `discounted_cost_limit`.
"""

import dataclasses
from typing import Optional

import flax
import jax
import jax.numpy as jnp
import optax

from gold_jax.types import Metrics

METHODS = ('lagrange', 'pid')  # The rules that adapt λ.
LAMBDA_RULES = ('fixed',) + METHODS  # A learner's `lambda_rule`: 'fixed' keeps λ = cost_coef.


@dataclasses.dataclass(frozen=True)
class Config:
  rule: str = 'lagrange'  # 'lagrange' (projected Adam ascent) or 'pid' (Stooke et al. 2020).
  lr: float = 0.05          # Adam step size of the 'lagrange' rule (λ moves ≈ lr per update).
  kp: float = 0.05          # PID proportional gain (FSRL default, on episode costs).
  ki: float = 5e-4          # PID integral gain; the integral accumulates once per update.
  kd: float = 0.1           # PID derivative gain, applied to the positive part of e − e_prev.
  max_value: float = 1000.0  # Upper clip of λ, guards against a diverging cost critic.


@flax.struct.dataclass
class Multiplier:
  """λ and the memory of its update rule."""
  value: jax.Array       # λ ≥ 0, scalar.
  integral: jax.Array    # PID integral I ≥ 0 (unused by 'lagrange').
  prev_error: jax.Array  # PID e_prev (unused by 'lagrange').
  opt_state: optax.OptState  # Adam state of the 'lagrange' rule.


def adapts(agent_config) -> bool:
  """Whether a learner Config's `lambda_rule` adapts λ (anything but 'fixed')."""
  return agent_config.lambda_rule != 'fixed'


def check_rule(lambda_rule: str) -> None:
  """A learner's `lambda_rule` must be one of `LAMBDA_RULES`."""
  if lambda_rule not in LAMBDA_RULES:
    raise ValueError(f'lambda_rule must be one of {LAMBDA_RULES}, got {lambda_rule!r}')


def rule_of(agent_config) -> Config:
  """The adaptive rule set by a learner Config's flat fields `lambda_rule` ('lagrange' or
  'pid'), `lambda_lr`, `pid_kp`, `pid_ki`, `pid_kd` and `lambda_max` (flat so that configs stay
  flags- and JSON-friendly)."""
  # A fixed λ is never updated: its multiplier only holds the value.
  rule = agent_config.lambda_rule if adapts(agent_config) else 'lagrange'
  return Config(rule=rule, lr=agent_config.lambda_lr,
                kp=agent_config.pid_kp, ki=agent_config.pid_ki, kd=agent_config.pid_kd,
                max_value=agent_config.lambda_max)


def validate(config: Config) -> None:
  if config.rule not in METHODS:
    raise ValueError(f'adaptive lambda rule must be one of {METHODS}, got {config.rule!r}')
  if min(config.lr, config.kp, config.ki, config.kd) < 0 or config.max_value <= 0:
    raise ValueError(f'lagrange gains and step size must be >= 0 and max_value > 0: {config}')


def discounted_cost_limit(cost_limit, episode_len: int, discount: float):
  """Per-episode budget κ -> threshold on a discounted cost value: κ (1 − γ^T) / ((1 − γ) T).

  Spreads κ evenly over the T steps of an episode (κ/T per step) and discounts the sum,
  (κ/T) Σ_{t<T} γ^t, as FSRL and the CVPO reference do; κ itself when γ = 1 or T = 1.
  `cost_limit` may be a traced array (a scheduled budget).
  """
  if episode_len <= 0 or not 0 <= discount <= 1:
    raise ValueError(f'need episode_len > 0 and 0 <= discount <= 1; got {episode_len}, {discount}')
  if isinstance(cost_limit, (int, float)) and cost_limit < 0:
    raise ValueError(f'the cost limit must be >= 0, got {cost_limit}')
  if discount == 1.0:
    return cost_limit
  return cost_limit * (1.0 - discount**episode_len) / ((1.0 - discount) * episode_len)


def _optimizer(config: Config) -> optax.GradientTransformation:
  return optax.adam(config.lr)


def init(value: float, config: Config = Config()) -> Multiplier:
  """A multiplier starting at λ = `value` (≥ 0)."""
  validate(config)
  if value < 0:
    raise ValueError(f'the initial Lagrange multiplier must be >= 0, got {value}')
  lam = jnp.asarray(value, jnp.float32)
  # The PID integral starts where K_i I reproduces the initial λ.
  integral = lam / config.ki if config.rule == 'pid' and config.ki > 0 else jnp.zeros_like(lam)
  return Multiplier(value=lam, integral=integral, prev_error=jnp.zeros_like(lam),
                    opt_state=_optimizer(config).init(lam))


def update(multiplier: Multiplier, cost_estimate: jax.Array, cost_limit: float,
           config: Config = Config(), max_error: Optional[float] = None
           ) -> tuple[Multiplier, Metrics]:
  """One step of the rule in `config.rule` given the estimate J_c and the limit d (same scale).

  `max_error` clips e = J_c − d to ±max_error: a burst of cost far above d (an untrained policy
  can pay tens of times the budget) then moves λ no faster than a slack episode brings it back,
  instead of winding up the PID integral or Adam's second moment.
  """
  error = jax.lax.stop_gradient(jnp.asarray(cost_estimate, jnp.float32)) - cost_limit
  if max_error is not None:
    error = jnp.clip(error, -max_error, max_error)
  if config.rule == 'lagrange':
    grad = -error  # dL/dλ of L(λ) = −λ (J_c − d).
    step, opt_state = _optimizer(config).update(grad, multiplier.opt_state, multiplier.value)
    value = jnp.clip(optax.apply_updates(multiplier.value, step), 0.0, config.max_value)
    new = multiplier.replace(value=value, opt_state=opt_state)
  elif config.rule == 'pid':
    integral = jnp.maximum(0.0, multiplier.integral + error)
    derivative = jnp.maximum(0.0, error - multiplier.prev_error)
    value = jnp.clip(config.kp * error + config.ki * integral + config.kd * derivative,
                     0.0, config.max_value)
    new = multiplier.replace(value=value, integral=integral, prev_error=error)
  else:
    raise ValueError(f'adaptive lambda rule must be one of {METHODS}, got {config.rule!r}')
  return new, {'training/lambda_cost_error': error}


def update_from_episode_cost(multiplier: Multiplier, episode_cost, agent_config
                             ) -> tuple[Multiplier, Metrics]:
  """One step of a learner's λ toward `cost_target · cost_limit` on a measured episode cost,
  the error clipped to ±`error_clip · cost_limit` (the learner Config's flat fields)."""
  c = agent_config
  max_error = None if c.error_clip is None else c.error_clip * c.cost_limit
  return update(multiplier, episode_cost, c.cost_target * c.cost_limit, rule_of(c), max_error)
