"""The op-level profile benchmark: HLO attribution, and smoke runs at tiny sizes."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from experiments import bench_profile

TINY_DT = 'embed_dim=16,num_layers=1,mlp_dim=32,context_len=4'


def test_hlo_ops_tell_matrix_products_from_the_rest():
  f = jax.jit(lambda a, b: jnp.tanh(a @ b) * 2.0)
  hlo = f.lower(jnp.ones((32, 64)), jnp.ones((64, 16))).compile().as_text()
  ops = bench_profile._hlo_ops(hlo)  # pylint: disable=protected-access
  matmuls = [name for name, op in ops.items() if op['matmul']]
  assert matmuls and any('dot' in op['source'] for op in ops.values())
  assert any(not op['matmul'] and 'tanh' in op['source'] for op in ops.values())


def test_control_flow_is_not_counted_as_an_op():
  f = jax.jit(lambda x: jax.lax.fori_loop(0, 3, lambda i, y: jnp.tanh(y @ y), x))
  hlo = f.lower(jnp.ones((8, 8))).compile().as_text()
  ops = bench_profile._hlo_ops(hlo)  # pylint: disable=protected-access
  loops = [name for name, op in ops.items() if op['container']]
  assert loops and all(not ops[name]['matmul'] for name in loops)
  assert any(op['matmul'] for op in ops.values())


def test_group_strips_transformations_and_control_flow():
  group = bench_profile._group  # pylint: disable=protected-access
  assert group('jit(f)/transpose(jvp(Model))/block_0/MlpBlock_0/Dense_0/dot_general') == (
      'Model/block_0/MlpBlock_0/Dense_0')
  assert group('jit(g)/while/body/closed_call/StateValue/MLP_0/Dense_1/dot_general') == (
      'StateValue/MLP_0/Dense_1')
  assert group('') == '(no source)'


@pytest.mark.parametrize('target', ['iql', 'cvpo', 'dt', 'dt_act'])
def test_profile_attributes_op_time(target):
  built = bench_profile.build(target, k=2, batch=8, hidden=16, dt_batch=4, dt_config=TINY_DT,
                              obs_dim=5, act_dim=2)
  result = bench_profile.profile(built, calls=2)
  assert result['wall_s'] > 0 and result['flops'] > 0
  if not result['ops_per_call']:
    pytest.skip('this JAX backend writes no per-op trace events')
  assert result['op_s'] > 0 and 0.0 < result['matmul_share'] <= 1.0
  assert result['concurrency'] < 1.5 * os.cpu_count()  # Loops are not counted twice.
  assert any(op['matmul'] for op in result['slowest'])
  assert sum(result['groups'].values()) == pytest.approx(result['op_s'])
  lines = []
  bench_profile.report(result, top=3, log=lines.append)
  assert lines[0].startswith('wall ') and 'matrix products' in lines[1]


def test_unknown_target_is_refused():
  with pytest.raises(ValueError, match="target must be one of"):
    bench_profile.build('ppo')


def test_launcher_smoke(tmp_path):
  out = str(tmp_path / 'ops.json')
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  run = subprocess.run(
      [sys.executable, '-m', 'experiments.bench_profile', '--target=dt_act', '--calls=2',
       f'--dt_config={TINY_DT}', '--obs_dim=5', '--top=3', f'--json_out={out}'],
      capture_output=True, text=True, env=env, timeout=300,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert run.returncode == 0, run.stderr[-3000:]
  assert 'dt_act on cpu' in run.stdout and 'per call' in run.stdout
  assert json.load(open(out))['flops'] > 0


def test_report_without_recognised_matrix_products():
  # On a GPU, XLA may hide every product of a call inside fusions the profile cannot attribute.
  result = {'ops_per_call': 3, 'wall_s': 2e-3, 'op_s': 1e-3, 'concurrency': 0.5,
            'matmul_share': 0.0, 'gflops': 10.0, 'flops': 2e7,
            'matmul_gflops_per_op_second': None, 'groups': {'eval_jaxpr': 1e-3},
            'slowest': [{'op': 'fusion', 'seconds': 1e-3, 'matmul': False, 'source': 'x'}]}
  lines = []
  bench_profile.report(result, top=3, log=lines.append)
  assert 'no op recognised as a matrix product' in lines[2]
