"""Smoke test of the PyTorch Decision Transformer benchmark (tiny sizes; needs PyTorch)."""

import json

import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='PyTorch not installed; the benchmark is optional')

from experiments import bench_torch_dt  # pylint: disable=g-import-not-at-top,wrong-import-position

TINY = bench_torch_dt.Config(embed_dim=16, num_layers=1, mlp_dim=32, context_len=4)


def test_run_tiny_reports_every_figure(tmp_path):
  lines = []
  out = tmp_path / 'bench.json'
  results = bench_torch_dt.run(steps=2, chunks=2, warmup=1, latency_calls=3, batch=4,
                               config=TINY, json_out=str(out), log=lines.append)
  for key in ('train_steps_per_s', 'latency1_ms', 'latency16_ms', 'final_loss'):
    assert np.isfinite(results[key]) and results[key] > 0, key
  e, m = TINY.embed_dim, TINY.mlp_dim
  embed = TINY.max_timestep * e + (1 + 1) * e + (60 + 1) * e + (2 + 1) * e + 2 * e
  block = 2 * 2 * e + 4 * (e * e + e) + (e * m + m) + (m * e + e)
  assert results['params'] == embed + block + 2 * e + e * 2 + 2
  assert json.loads(out.read_text())['params'] == results['params']
  assert any('train steps/s' in line for line in lines)


def test_left_padded_windows_give_finite_actions():
  model = bench_torch_dt.DecisionTransformer(60, 2, TINY).eval()
  window = bench_torch_dt.random_windows(np.random.default_rng(0), 2, 4, 60, 2)
  window['mask'][0, :3] = 0
  with torch.inference_mode():
    actions = model(window['obs'], window['action'], window['rtg'], window['timestep'],
                    window['mask'])
  assert actions.shape == (2, 4, 2) and torch.isfinite(actions).all()
