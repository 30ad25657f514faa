"""Checks every MLP learner (`gold_jax.agents.<name>`) must pass, shared by its test file."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from gold_jax.types import Transition


def random_batch(seed, obs_dim: int, act_dim: int, n: int, k=None, cost_p: float = 0.3):
  """A `Transition` batch of `n` random transitions, stacked `k` times if `k` is given."""
  rng = np.random.default_rng(seed)
  lead = (n,) if k is None else (k, n)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  return Transition(
      obs=f32(rng.normal(size=lead + (obs_dim,))),
      action=f32(rng.uniform(-1, 1, size=lead + (act_dim,))),
      reward=f32(rng.normal(size=lead)),
      cost=f32(rng.uniform(size=lead) < cost_p),
      next_obs=f32(rng.normal(size=lead + (obs_dim,))),
      terminated=f32(rng.uniform(size=lead) < 0.1))


def assert_no_recompilation(module, config, obs_dim: int, act_dim: int, n: int, k: int):
  """`update`, `update_n` and acting compile once, for fresh states of the config too."""
  batch = lambda seed, k=None: random_batch(seed, obs_dim, act_dim, n, k)
  caches = lambda: (module.update._cache_size(), module.update_n._cache_size(),
                    module._act._cache_size())
  state = module.init(jax.random.PRNGKey(0), obs_dim, act_dim, config)
  state, _ = module.update(state, batch(0))
  state, _ = module.update_n(state, batch(0, k))
  module.act(state, jnp.zeros(obs_dim), jax.random.PRNGKey(0))
  sizes = caches()
  for i in range(10):
    state, _ = module.update(state, batch(i))
    state, _ = module.update_n(state, batch(i, k))
    module.act(state, jnp.zeros(obs_dim), jax.random.PRNGKey(i))
  state = module.init(jax.random.PRNGKey(1), obs_dim, act_dim, config)
  module.update_n(state, batch(0, k))
  assert caches() == sizes


def assert_same_key_same_result(module, config, obs_dim: int, act_dim: int, n: int, k: int):
  """The same key gives bit-identical states and metrics; another key other parameters."""
  def run(seed):
    state = module.init(jax.random.PRNGKey(seed), obs_dim, act_dim, config)
    return module.update_n(state, random_batch(0, obs_dim, act_dim, n, k))
  (s1, m1), (s2, m2), (s3, _) = run(0), run(0), run(1)
  chex.assert_trees_all_equal(m1, m2)
  chex.assert_trees_all_equal(s1, s2)
  assert not np.allclose(s1.actor_params['Dense_0']['kernel'], s3.actor_params['Dense_0']['kernel'])
