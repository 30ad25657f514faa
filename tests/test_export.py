"""gold_jax/export.py: the numpy deployment artifact matches every MLP learner's JAX act."""

import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from gold_jax import export
from gold_jax.agents import bc, cvpo, dt, iql, sac

OBS_DIM, ACT_DIM = 5, 3


def _perturbed(state, attr):
  """Random parameters instead of the near-zero output layers of a fresh init."""
  params = getattr(state, attr)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
  leaves = [x + jax.random.normal(k, x.shape) * 0.5 for x, k in zip(leaves, keys)]
  return state.replace(**{attr: jax.tree.unflatten(tree, leaves)})


def _init(module, key, config, **kwargs):
  """`module.init` jitted: one compilation instead of one per operation."""
  return jax.jit(module.init, static_argnums=(1, 2, 3))(key, OBS_DIM, ACT_DIM, config, **kwargs)


LEARNERS = {
    'iql_awr': (iql, lambda k: _perturbed(_init(iql, k, iql.Config(
        hidden_dims=(16, 16), actor_loss='awr')), 'actor_params')),
    'iql_sac': (iql, lambda k: _perturbed(_init(iql, k, iql.Config(
        hidden_dims=(16, 16), actor_loss='sac')), 'actor_params')),
    'cvpo': (cvpo, lambda k: _perturbed(_init(cvpo, k, cvpo.Config(
        hidden_dims=(16, 16))), 'policy_params')),
    'sac': (sac, lambda k: _perturbed(_init(sac, k, sac.Config(
        hidden_dims=(16, 16, 16))), 'actor_params')),
    'bc': (bc, lambda k: _perturbed(_init(
        bc, k, bc.Config(hidden_dims=(16,)), obs_mean=np.arange(OBS_DIM, dtype=np.float32),
        obs_std=np.linspace(0.5, 2.0, OBS_DIM).astype(np.float32)), 'params')),
}


@pytest.mark.parametrize('name', sorted(LEARNERS))
def test_numpy_policy_matches_jax_act(name, tmp_path):
  module, make = LEARNERS[name]
  state = make(jax.random.PRNGKey(0))
  path = export.export_actor(state, str(tmp_path / f'{name}.npz'), metadata={'task': 'X'})
  policy = export.NumpyPolicy.load(path)
  assert (policy.obs_dim, policy.act_dim) == (OBS_DIM, ACT_DIM)
  assert policy.metadata['task'] == 'X' and policy.metadata['learner'] == module.__name__.split('.')[-1]
  obs = np.random.default_rng(0).normal(size=(32, OBS_DIM)).astype(np.float32) * 3
  expected = np.asarray(module.act(state, obs, jax.random.PRNGKey(1), deterministic=True))
  actions = policy(obs)
  chex.assert_shape(actions, (32, ACT_DIM))
  assert actions.dtype == np.float32
  np.testing.assert_allclose(actions, expected, atol=1e-5)
  assert np.abs(expected).max() > 0.3  # The comparison is not between near-zero outputs.
  np.testing.assert_allclose(policy(obs[0]), expected[0], atol=1e-5)


def test_hand_computed_forward(tmp_path):
  state = bc.init(jax.random.PRNGKey(0), 2, 1, bc.Config(hidden_dims=(2,)),
                  obs_mean=np.array([1.0, 0.0], np.float32),
                  obs_std=np.array([2.0, 1.0], np.float32))
  params = {'MLP_0': {'Dense_0': {'kernel': np.array([[1.0, -1.0], [0.5, 2.0]], np.float32),
                                  'bias': np.array([0.0, 0.1], np.float32)}},
            'Dense_0': {'kernel': np.array([[1.0], [-0.5]], np.float32),
                        'bias': np.array([0.2], np.float32)}}
  state = state.replace(params=params)
  policy = export.NumpyPolicy.load(export.export_actor(state, str(tmp_path / 'p.npz')))
  # x = ((3, 1) - (1, 0)) / (2, 1) = (1, 1); h = relu((1.5, 1.1)); a = tanh(1.5 - 0.55 + 0.2).
  np.testing.assert_allclose(policy(np.array([3.0, 1.0])), [np.tanh(1.15)], rtol=1e-6)
  assert policy.num_params() == 2 * 2 + 2 + 2 + 1


def test_sequence_model_is_refused(tmp_path):
  state = _init(dt, jax.random.PRNGKey(0),
                dt.Config(embed_dim=8, num_layers=1, context_len=2, max_timestep=5))
  with pytest.raises(ValueError, match='not an MLP actor'):
    export.export_actor(state, str(tmp_path / 'dt.npz'))
  assert not os.path.exists(tmp_path / 'dt.npz')


def test_jax_export_round_trip_and_latency(tmp_path):
  pytest.importorskip('flatbuffers', reason='jax.export serialisation needs the optional '
                      'flatbuffers package, which is not installed')
  state = LEARNERS['iql_awr'][1](jax.random.PRNGKey(3))
  policy = export.NumpyPolicy.load(export.export_actor(state, str(tmp_path / 's.npz')))
  path = export.export_jax(policy, str(tmp_path / 's.jax'), batch=4)
  call = export.load_jax_export(path)
  obs = np.random.default_rng(1).normal(size=(4, OBS_DIM)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(call(obs)), policy(obs), atol=1e-5)
  seconds = export.latency(lambda: policy(obs[0]), repeats=20, warmup=2)
  assert np.isfinite(seconds) and seconds > 0.0  # A figure, not a speed claim.


def test_numpy_policy_loads_without_jax(tmp_path):
  state = LEARNERS['cvpo'][1](jax.random.PRNGKey(4))
  path = export.export_actor(state, str(tmp_path / 'c.npz'))
  obs = np.ones(OBS_DIM, np.float32)
  code = ('import sys, numpy as np\n'
          'from gold_jax.export import NumpyPolicy\n'
          f'print(NumpyPolicy.load({path!r})(np.ones({OBS_DIM}, np.float32)).tolist())\n'
          'assert "jax" not in sys.modules, "jax was imported"\n')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  expected = cvpo.act(state, obs, jax.random.PRNGKey(0), deterministic=True)
  np.testing.assert_allclose(eval(out.stdout.strip()), np.asarray(expected), atol=1e-5)  # pylint: disable=eval-used
