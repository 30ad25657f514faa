"""Pure E-step and M-step operations of CVPO (Liu et al., 2022), in the spirit of rlax.mpo_ops.

Sample-based values have shape `(M, B)`: M actions drawn from the prior policy π_old for each of
B states, sample axis first (as in rlax). Per-state policy statistics have shape `(B, act_dim)`.

Constrained E-step (Liu et al. 2022). The non-parametric policy
    q(a|s) ∝ π_old(a|s) exp((Q_r(s, a) − λ Q_c(s, a)) / η)
solves  max_q E_s E_q[Q_r]  s.t.  E_s E_q[Q_c] ≤ c,  E_s KL(q || π_old) ≤ ε,
and (η, λ) minimise the convex dual
    g(η, λ) = η ε + λ c + η E_s[log (1/M) Σ_a exp((Q_r − λ Q_c) / η)],  η > 0, λ ≥ 0,
whose gradient is (ε − E_s KL(q || π_old), c − E_s E_q[Q_c]).

M-step (Liu et al. 2022; decoupled KL of Abdolmaleki et al. 2018, arXiv:1812.02256, Sec. 4.2.1).
Weighted maximum likelihood of the sampled actions under two Gaussians, one with the new mean
and the old std, one with the old mean and the new std, each kept within its own KL bound by a
Lagrange multiplier. As in the CVPO reference code (cvpo-safe-rl, FSRL), the weighted
log-likelihood is averaged over samples and states, so its scale does not grow with M.
"""

from typing import Optional, Tuple

import chex
import jax
import jax.numpy as jnp

from gold_jax.agents import lagrange
from gold_jax.distributions import gaussian_log_prob


def dual_function(eta, lam, q_r, q_c, epsilon, cost_limit) -> jax.Array:
  """The E-step dual g(η, λ) (module docstring), a scalar. `q_r`, `q_c`: `(M, B)`."""
  chex.assert_rank([q_r, q_c], 2)
  chex.assert_equal_shape([q_r, q_c])
  z = (q_r - lam * q_c) / eta
  log_norm = jax.nn.logsumexp(z, axis=0) - jnp.log(z.shape[0])
  return eta * epsilon + lam * cost_limit + eta * jnp.mean(log_norm)


def kl_and_cost(eta, lam, q_r, q_c) -> Tuple[jax.Array, jax.Array]:
  """E_s KL(q || π_old) and E_s E_q[Q_c] of the non-parametric policy at (η, λ).

  With z = (Q_r − λ Q_c) / η and w = softmax_a z, KL = E_w z − log (1/M) Σ_a exp z. These are
  ε − ∂g/∂η and c − ∂g/∂λ.
  """
  z = (q_r - lam * q_c) / eta
  w = jax.nn.softmax(z, axis=0)
  log_norm = jax.nn.logsumexp(z, axis=0) - jnp.log(z.shape[0])
  kl = jnp.mean(jnp.sum(w * z, axis=0) - log_norm)
  return kl, jnp.mean(jnp.sum(w * q_c, axis=0))


def _bisect(increasing_fn, lo, hi, num_steps: int) -> jax.Array:
  """Root of a nondecreasing scalar function on [lo, hi]; the endpoint if it has none there."""
  def body(_, bounds):
    a, b = bounds
    mid = 0.5 * (a + b)
    above = increasing_fn(mid) > 0
    return jnp.where(above, a, mid), jnp.where(above, mid, b)
  a, b = jax.lax.fori_loop(0, num_steps, body, (lo, hi))
  return jnp.where(b == hi, hi, jnp.where(a == lo, lo, 0.5 * (a + b)))


def solve_dual(q_r, q_c, epsilon, cost_limit, num_steps: int = 20, eta_min: float = 1e-6,
               dual_max: float = 1e5, lam_min: float = 1e-6, lam_max: Optional[float] = None
               ) -> Tuple[jax.Array, jax.Array]:
  """Minimises the E-step dual over η ∈ [eta_min, dual_max], λ ∈ {0} ∪ [lam_min, lam_max]
  (`lam_max` None: `dual_max`).

  g is jointly convex, so both optimality conditions are monotone and bisection (in log space,
  `num_steps` halvings each) finds them exactly, whatever the scale of the Q values:
  - for fixed λ, ∂g/∂η = ε − KL(η, λ) is nondecreasing in η: η*(λ) makes KL = ε (or sits at a
    bound when it cannot);
  - φ(λ) = g(η*(λ), λ) is convex with φ'(λ) = c − E_q[Q_c] (envelope theorem): λ = 0 when the
    constraint holds at λ = 0, otherwise the root of φ', or `lam_max` when even that cannot
    meet the limit (the infeasible case: q then trades cost down as far as λ and the KL bound
    allow).
  Costs about `num_steps` (constraint inactive) to `num_steps²` evaluations of a softmax over
  `(M, B)`.
  """
  chex.assert_rank([q_r, q_c], 2)
  chex.assert_equal_shape([q_r, q_c])
  dtype = q_r.dtype
  log_eta_bounds = jnp.log(jnp.array([eta_min, dual_max], dtype))
  log_lam_bounds = jnp.log(jnp.array([lam_min, dual_max if lam_max is None else lam_max], dtype))

  def best_eta(lam):
    dg_deta = lambda log_eta: epsilon - kl_and_cost(jnp.exp(log_eta), lam, q_r, q_c)[0]
    return jnp.exp(_bisect(dg_deta, *log_eta_bounds, num_steps))

  def dphi_dlam(lam):
    return cost_limit - kl_and_cost(best_eta(lam), lam, q_r, q_c)[1]

  def constrained():
    lam = jnp.exp(_bisect(lambda log_lam: dphi_dlam(jnp.exp(log_lam)), *log_lam_bounds,
                          num_steps))
    return best_eta(lam), lam

  zero = jnp.zeros((), dtype)
  eta_free = best_eta(zero)
  feasible = cost_limit - kl_and_cost(eta_free, zero, q_r, q_c)[1] >= 0
  return jax.lax.cond(feasible, lambda: (eta_free, zero), constrained)


def estep_weights(q_r, q_c, eta, lam) -> jax.Array:
  """Weights of the non-parametric policy on the M samples: softmax_a((Q_r − λ Q_c) / η).

  Sums to one over the sample axis; no gradient flows through it (the E-step target is fixed).
  """
  chex.assert_rank([q_r, q_c], 2)
  return jax.lax.stop_gradient(jax.nn.softmax((q_r - lam * q_c) / eta, axis=0))


def decoupled_gaussian_kl(mean_old, log_std_old, mean, log_std) -> Tuple[jax.Array, jax.Array]:
  """Per-state decoupled KL of diagonal Gaussians (Abdolmaleki et al. 2018, Sec. 4.2.1):

    C_μ = KL(N(μ_old, σ_old) || N(μ, σ_old)) = Σ_d (μ − μ_old)² / (2 σ_old²),
    C_Σ = KL(N(μ_old, σ_old) || N(μ_old, σ)) = Σ_d [log σ/σ_old + σ_old² / (2σ²) − 1/2].
  Returns two `(B,)` arrays.
  """
  chex.assert_rank([mean_old, log_std_old, mean, log_std], 2)
  chex.assert_equal_shape([mean_old, log_std_old, mean, log_std])
  kl_mean = 0.5 * jnp.sum(((mean - mean_old) * jnp.exp(-log_std_old)) ** 2, axis=-1)
  ratio = jnp.exp(2.0 * (log_std_old - log_std))
  kl_std = jnp.sum(log_std - log_std_old + 0.5 * ratio - 0.5, axis=-1)
  return kl_mean, kl_std


def weighted_mle_loss(weights, actions, mean, log_std, mean_old, log_std_old) -> jax.Array:
  """M-step negative weighted log-likelihood with decoupled mean and std (a scalar), averaged
  over the M samples and the B states as the reference code does:

    −(1 / (M B)) Σ_s Σ_a w(a|s) [log N(a; μ_θ, σ_old) + log N(a; μ_old, σ_θ)].
  `weights`: `(M, B)`, summing to one over M; `actions`: `(M, B, act_dim)`. (This is 1/M times
  the expectation under q, so the KL multipliers, capped as in the reference, keep their weight
  against it whatever M.)
  """
  chex.assert_rank([weights, actions], [2, 3])
  log_prob_mean = gaussian_log_prob(mean, jax.lax.stop_gradient(log_std_old), actions)
  log_prob_std = gaussian_log_prob(jax.lax.stop_gradient(mean_old), log_std, actions)
  return -jnp.mean(weights * (log_prob_mean + log_prob_std))


def update_kl_multiplier(alpha, kl, epsilon, learning_rate, alpha_max) -> jax.Array:
  """Projected gradient step on the M-step Lagrangian's multiplier for `KL ≤ ε`:

    α ← clip(α + lr (KL − ε), 0, α_max): α grows while the bound is violated.
  """
  return jnp.clip(alpha + learning_rate * (jax.lax.stop_gradient(kl) - epsilon), 0.0, alpha_max)


def episode_cost_to_q(cost_limit, discount: float, episode_len: int):
  """Per-episode cost budget -> threshold on the discounted cost value Q_c
  (`lagrange.discounted_cost_limit`: κ (1 − γ^T) / ((1 − γ) T))."""
  return lagrange.discounted_cost_limit(cost_limit, episode_len, discount)


def linear_schedule(step, start: float, end: float, decay_steps: int) -> jax.Array:
  """Linear interpolation from `start` (step 0) to `end` (step >= decay_steps)."""
  if decay_steps <= 0:
    return jnp.asarray(end, jnp.float32)
  frac = jnp.clip(step / decay_steps, 0.0, 1.0)
  return jnp.asarray(start + frac * (end - start), jnp.float32)
