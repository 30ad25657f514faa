"""Data-parallel training (DT and the MLP learners) equals the single-device step.

Two CPU devices are simulated with `--xla_force_host_platform_device_count=2`, which must be set
before JAX starts, so the check runs as a script in a fresh interpreter.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax
    import numpy as np

    from gold_jax import parallel
    from gold_jax.agents import dt
    from gold_jax.data import segments
    from gold_jax.data.trajectories import TrajectoryDataset

    assert jax.device_count() == 2, jax.devices()
    rng = np.random.default_rng(0)
    episodes = [dict(observations=rng.normal(size=(13, 3)).astype(np.float32),
                     actions=rng.uniform(-1, 1, (12, 2)).astype(np.float32),
                     rewards=rng.normal(size=12).astype(np.float32),
                     costs=rng.uniform(size=12).astype(np.float32)) for _ in range(4)]
    dataset = TrajectoryDataset.from_episodes(episodes)
    config = dt.Config(embed_dim=16, num_layers=1, mlp_dim=32, context_len=4, dropout_rate=0.1,
                       warmup_steps=2, learning_rate=1e-3, max_timestep=16, use_cost_token=True)
    data = segments.make_segment_data(dataset, config.context_len, config.return_scale,
                                      config.cost_scale)
    batches = segments.sample_segments(data, jax.random.PRNGKey(0), 8, num_batches=3)
    batches = jax.tree.map(np.asarray, batches)
    init = lambda: dt.init(jax.random.PRNGKey(0), 3, 2, config, *dataset.obs_stats())

    single, single_metrics = dt.update_n(jax.device_put(init(), jax.devices()[0]),
                                         jax.device_put(batches, jax.devices()[0]))

    mesh = parallel.make_mesh()
    sharded_batches = parallel.shard_batch(batches, mesh, batch_axis=1)
    assert sharded_batches.obs.sharding.shard_shape(sharded_batches.obs.shape) == (3, 4, 4, 3)
    update_n = dt.make_sharded_update(mesh)
    state, metrics = update_n(parallel.replicate(init(), mesh), sharded_batches)
    assert state.params['action_head']['kernel'].sharding.is_fully_replicated

    assert int(state.step) == int(single.step) == 3
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                         single.params, init().params)
    assert max(jax.tree.leaves(moved)) > 1e-4  # The updates did change the parameters.
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(state.params)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    for key in single_metrics:
      np.testing.assert_allclose(single_metrics[key], metrics[key], rtol=1e-4)

    try:
      parallel.shard_batch(jax.tree.map(lambda x: x[:, :3], batches), mesh, batch_axis=1)
      raise AssertionError('an odd batch was split')
    except ValueError as e:
      assert 'does not split evenly over 2 devices' in str(e)
    print('DATA PARALLEL OK', float(metrics['loss/action']))
""")


def _run_on_two_cpu_devices(script: str) -> str:
  """Runs `script` in a fresh interpreter with two CPU devices; returns what it printed."""
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  result = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr
  return result.stdout


def test_data_parallel_update_equals_single_device():
  assert 'DATA PARALLEL OK' in _run_on_two_cpu_devices(SCRIPT)


MLP_SCRIPT = textwrap.dedent("""
    import importlib
    import jax
    import numpy as np

    from gold_jax import parallel
    from gold_jax.types import Transition

    assert jax.device_count() == 2, jax.devices()
    rng = np.random.default_rng(0)
    shape = (3, 8)  # 3 stacked batches of 8 transitions.
    f32 = lambda x: np.asarray(x, np.float32)
    batches = Transition(obs=f32(rng.normal(size=(*shape, 4))),
                         action=f32(rng.uniform(-1, 1, (*shape, 2))),
                         reward=f32(rng.normal(size=shape)), cost=f32(rng.random(shape) < 0.3),
                         next_obs=f32(rng.normal(size=(*shape, 4))),
                         terminated=f32(rng.random(shape) < 0.1))
    mesh = parallel.make_mesh()
    for name, tolerance in (('iql', 1e-4), ('sac', 1e-4), ('bc', 1e-4), ('cvpo', 1e-3)):
      module = importlib.import_module(f'gold_jax.agents.{name}')
      config = module.Config(hidden_dims=(16, 16))
      init = lambda: module.init(jax.random.PRNGKey(1), 4, 2, config)
      single, single_metrics = module.update_n(jax.device_put(init(), jax.devices()[0]),
                                               jax.device_put(batches, jax.devices()[0]))
      state, metrics = module.make_sharded_update(mesh)(
          parallel.replicate(init(), mesh), parallel.shard_batch(batches, mesh, batch_axis=1))
      moved = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
               for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(init()))]
      assert max(moved) > 1e-5, name  # The updates did change the state.
      for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(state)):
        assert b.sharding.is_fully_replicated, name
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=tolerance, atol=tolerance, err_msg=name)
      for key in single_metrics:
        np.testing.assert_allclose(single_metrics[key], metrics[key], rtol=tolerance,
                                   atol=tolerance, err_msg=f'{name}: {key}')
      print('DATA PARALLEL OK', name)
""")


def test_data_parallel_mlp_learners_equal_single_device():
  assert _run_on_two_cpu_devices(MLP_SCRIPT).count('DATA PARALLEL OK') == 4
