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
  """The cost multiplier λ of a learner (`iql.Config.multiplier`, `sac.Config.multiplier`)."""
  rule: str = 'fixed'  # 'fixed' (λ = value), or adapted on measured episode costs: 'lagrange'
                       # (projected Adam ascent) or 'pid' (Stooke et al. 2020).
  value: float = 0.0   # λ when fixed; the adapted λ's initial value. ≥ 0.
  cost_target: float = 1.0  # Adapted λ aims the episode cost at cost_target · κ; in (0, 1].
  lr: float = 0.05          # 'lagrange': Adam step size (λ moves ≈ lr per update).
  kp: float = 0.05          # 'pid': proportional gain (FSRL default, on episode costs).
  ki: float = 5e-4          # 'pid': integral gain; the integral accumulates once per update.
  kd: float = 0.1           # 'pid': derivative gain, on the positive part of e − e_prev.
  max_value: float = 1000.0  # Upper clip of λ.
  error_clip: Optional[float] = 1.0  # λ sees J_c − d clipped to ±error_clip · κ; None: unclipped.
  start_step: int = 0       # Env steps before an adapted λ moves (a reward-first phase).


@flax.struct.dataclass
class Multiplier:
  """λ and the memory of its update rule."""
  value: jax.Array       # λ ≥ 0, scalar.
  integral: jax.Array    # PID integral I ≥ 0 (unused by 'lagrange').
  prev_error: jax.Array  # PID e_prev (unused by 'lagrange').
  opt_state: optax.OptState  # Adam state of the 'lagrange' rule.


def adapts(config: Config) -> bool:
  """Whether the rule adapts λ (anything but 'fixed')."""
  return config.rule != 'fixed'


def validate(config: Config) -> None:
  if config.rule not in LAMBDA_RULES:
    raise ValueError(f'the lambda rule must be one of {LAMBDA_RULES}, got {config.rule!r}')
  if config.value < 0:
    raise ValueError(f'lambda (its fixed or initial value) must be >= 0, got {config.value}')
  if min(config.lr, config.kp, config.ki, config.kd) < 0 or config.max_value <= 0:
    raise ValueError('the lambda step size and PID gains must be >= 0 and max_value > 0, got '
                     f'lr={config.lr}, kp={config.kp}, ki={config.ki}, kd={config.kd}, '
                     f'max_value={config.max_value}')
  if not 0.0 < config.cost_target <= 1.0:
    raise ValueError(f'the lambda cost_target must be in (0, 1], got {config.cost_target}')
  if config.error_clip is not None and config.error_clip <= 0:
    raise ValueError(f'the lambda error_clip must be > 0 or None, got {config.error_clip}')
  if config.start_step < 0:
    raise ValueError(f'the lambda start_step must be >= 0, got {config.start_step}')


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


def init(value: float, config: Config = Config(rule='lagrange')) -> Multiplier:
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
           config: Config = Config(rule='lagrange'), max_error: Optional[float] = None
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


def update_from_episode_cost(multiplier: Multiplier, episode_cost, config: Config,
                             cost_limit: float) -> tuple[Multiplier, Metrics]:
  """One step of λ toward `config.cost_target · cost_limit` on a measured episode cost, the
  error clipped to ±`config.error_clip · cost_limit`."""
  max_error = None if config.error_clip is None else config.error_clip * cost_limit
  return update(multiplier, episode_cost, config.cost_target * cost_limit, config, max_error)
