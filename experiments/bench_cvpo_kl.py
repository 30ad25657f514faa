r"""CVPO's M-step KL and E-step duals at the shipped defaults, on fixed synthetic data.

  python -m experiments.bench_cvpo_kl --updates=200

Each update samples a batch from one fixed pool of transitions (a one-step task: reward peaks at
a0 = 0.8, cost 1 where a0 > 0.5, the cost limit `--cost_limit` per episode of `--episode_len`
steps), so two versions of the learner see the same data. Prints, over the updates, the mean
KL between the policy before and after each M-step (mean and std parts, and their ratio to the
bounds), the mean KL to the prior π_old after it, and the ranges of λ, η, α_μ and α_Σ. Only
`cvpo.Config()`, `cvpo.init`, `cvpo.update` and the policy's outputs are used.
"""

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from gold_jax.agents import cvpo, cvpo_ops
from gold_jax.types import Transition


def _pool(size: int, obs_dim: int, act_dim: int, seed: int) -> Transition:
  rng = np.random.default_rng(seed)
  obs = rng.normal(size=(size, obs_dim)).astype(np.float32)
  action = rng.uniform(-1.0, 1.0, size=(size, act_dim)).astype(np.float32)
  reward = np.exp(-((action[:, 0] - 0.8) / 0.3) ** 2).astype(np.float32)
  cost = (action[:, 0] > 0.5).astype(np.float32)
  return Transition(obs, action, reward, cost, obs, np.ones(size, np.float32))


def run(updates: int, batch_size: int, cost_limit: float, episode_len: int, seed: int):
  """Per-update metrics of `updates` default-config CVPO updates (a dict of arrays)."""
  obs_dim, act_dim = 8, 2
  pool = _pool(20_000, obs_dim, act_dim, seed)
  config = cvpo.Config(cost_limit_start=cost_limit, cost_limit_end=cost_limit,
                       episode_len=episode_len)
  state = cvpo.init(jax.random.PRNGKey(seed), obs_dim, act_dim, config)
  policy = cvpo._policy(config, act_dim)  # pylint: disable=protected-access
  step_kl = jax.jit(lambda before, after, obs: cvpo_ops.decoupled_gaussian_kl(
      *policy.apply(before, obs), *policy.apply(after, obs)))
  rng = np.random.default_rng(seed + 1)
  rows = {name: [] for name in ('step_kl_mean', 'step_kl_std', 'kl_mean', 'kl_std', 'lambda',
                                'eta', 'alpha_mean', 'alpha_std')}
  for _ in range(updates):
    batch = jax.tree.map(lambda x: x[rng.integers(0, len(x), batch_size)], pool)
    before = jax.tree.map(jnp.copy, state.policy_params)  # `update` donates the state
    state, metrics = cvpo.update(state, batch)
    kl_mean, kl_std = step_kl(before, state.policy_params, batch.obs)
    rows['step_kl_mean'].append(float(kl_mean.mean()))
    rows['step_kl_std'].append(float(kl_std.mean()))
    for name in ('kl_mean', 'kl_std', 'lambda', 'eta', 'alpha_mean', 'alpha_std'):
      rows[name].append(float(metrics[f'training/{name}']))
  return config, {name: np.asarray(values) for name, values in rows.items()}


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  kw = {'flag_values': fv}
  flags.DEFINE_integer('updates', 200, 'CVPO updates.', **kw)
  flags.DEFINE_integer('batch_size', 256, 'Transitions per update.', **kw)
  flags.DEFINE_float('cost_limit', 1.0, 'Cost budget per episode.', **kw)
  flags.DEFINE_integer('episode_len', 10, 'T of the Q_c threshold.', **kw)
  flags.DEFINE_integer('seed', 0, 'Seed of the data and the learner.', **kw)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  fv = flags.FLAGS
  config, rows = run(fv.updates, fv.batch_size, fv.cost_limit, fv.episode_len, fv.seed)
  print(f'{fv.updates} updates at the defaults (m_steps {config.m_steps}, '
        f'{config.num_samples} samples, bounds {config.kl_mean:g} / {config.kl_std:g})')
  for part, bound in (('mean', config.kl_mean), ('std', config.kl_std)):
    step, anchor = rows[f'step_kl_{part}'], rows[f'kl_{part}']
    print(f'  KL_{part}: per update {step.mean():.3g} ({step.mean() / bound:.2f}x bound, '
          f'max {step.max():.3g}); to pi_old {anchor.mean():.3g} '
          f'({anchor.mean() / bound:.2f}x bound)')
  for name in ('lambda', 'eta', 'alpha_mean', 'alpha_std'):
    print(f'  {name}: {rows[name].min():.4g} .. {rows[name].max():.4g} '
          f'(last {rows[name][-1]:.4g})')


if __name__ == '__main__':
  define_flags()
  app.run(main)
