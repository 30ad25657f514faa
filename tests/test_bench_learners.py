"""Smoke and unit tests of the learner benchmark (tiny sizes)."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from experiments import bench_learners
from gold_jax.agents import dt
from launcher_checks import parsed_flags

TINY = dict(batch=8, hidden=16, k=2, reps=2, dt_batch=4, matmul_sizes=(64,), matmul_reps=2,
            latency_calls=5, dt_config='embed_dim=16,num_layers=1,mlp_dim=32,context_len=4')


def test_xla_flops_of_matmul_is_2mkn():
  a, b = jnp.ones((8, 16)), jnp.ones((16, 4))
  assert bench_learners.xla_flops(jax.jit(jnp.matmul), a, b) == 2 * 8 * 16 * 4


def test_count_params_skips_optimizer_and_targets():
  state = {'actor_params': {'w': np.zeros((3, 4)), 'b': np.zeros(4)},
           'critic_params': {'w': np.zeros((5, 2))},
           'target_critic_params': {'w': np.zeros((5, 2))},
           'actor_opt_state': {'mu': {'actor_params': np.zeros((3, 4))}}, 'step': np.zeros(())}
  assert bench_learners.count_params(state) == 16 + 10
  assert bench_learners.count_params(state, ('actor_params',)) == 16


def test_parse_overrides_types_like_defaults():
  config = bench_learners.parse_overrides('embed_dim=16, dropout_rate=0.5,use_cost_token=true',
                                          dt.Config())
  assert (config.embed_dim, config.dropout_rate, config.use_cost_token) == (16, 0.5, True)
  assert config.num_layers == dt.Config().num_layers


def test_run_tiny_reports_every_figure(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'gold_jax.agents.cvpo', None)  # Import fails: unavailable.
  lines = []
  out = tmp_path / 'bench.json'
  results = bench_learners.run(**TINY, learners=('iql', 'cvpo', 'dt', 'nope'),
                               json_out=str(out), log=lines.append)
  assert results['matmul_gflops'] > 0
  iql = results['iql']
  for key in ('updates_per_s', 'flops_per_update', 'peak_fraction', 'act_latency_ms'):
    assert np.isfinite(iql[key]) and iql[key] > 0, key
  # Twin Q (obs+act -> 16 -> 16 -> 1), V (obs -> 16 -> 16 -> 1), AWR actor (mean + log std).
  q = 2 * (62 * 16 + 16 + 16 * 16 + 16 + 16 + 1)
  v = 60 * 16 + 16 + 16 * 16 + 16 + 16 + 1
  actor = 60 * 16 + 16 + 16 * 16 + 16 + 16 * 2 + 2 + 2
  assert iql['actor_params'] == actor and iql['params'] == q + v + actor
  assert results['dt']['train_steps_per_s'] > 0 and results['dt']['context_len'] == 4
  # Every timed update_n call reused the program compiled by the first one.
  assert iql['update_n_recompiles'] == 0 and results['dt']['update_n_recompiles'] == 0
  assert results['dt_over_mlp_latency'] > 0
  assert 'import of gold_jax.agents.cvpo halted' in results['cvpo']['unavailable']
  assert 'unknown learner' in results['nope']['unavailable']
  assert any(line.startswith('cvpo: unavailable: ') for line in lines)
  assert json.loads(out.read_text())['iql']['params'] == iql['params']


def test_main_parses_flags(tmp_path, capsys):
  out = tmp_path / 'main.json'
  argv = ['bench', '--learners=nope', '--matmul_sizes=32,16', '--matmul_reps=1',
          f'--json_out={out}']
  with parsed_flags(bench_learners.define_flags, argv):
    bench_learners.main(argv[:1])
  assert 'matmul f32 (before): 32x32' in capsys.readouterr().out
  assert json.loads(out.read_text())['setup']['k'] == 20
