"""The demo study (gold_jax.studies.demo) at --scale=smoke: every stage runs; the table, curves and artifact appear."""

import json
import os

import numpy as np

from gold_jax.studies import demo
from gold_jax import export


def test_smoke_demo_produces_table_curves_and_student(tmp_path, capsys):
  workdir = str(tmp_path / 'demo')
  result = demo.run(demo.Config(scale='smoke', progress=False), workdir)
  out = capsys.readouterr().out

  # The printed table: one row per policy, reward and cost as mean ± std.
  table = [line for line in out.splitlines() if line.startswith('|')]
  assert table[0].startswith('| policy | reward | cost')
  labels = [row.split('|')[1].strip() for row in table[2:]]
  assert labels == ['expert (SAC-Lagrangian)', 'DT guide', 'IQL from scratch', 'GOLD (DT-IQL)']
  for row in table[2:]:
    assert row.count('±') == 2
  with open(os.path.join(workdir, 'results.md')) as f:
    assert '\n'.join(table) in f.read()

  # Rows agree with the saved evaluations.
  saved = json.load(open(os.path.join(workdir, 'results.json')))
  gold = json.load(open(os.path.join(workdir, 'gold', 'evaluation', 'evaluation.json')))
  assert saved['evaluations']['gold']['reward_mean'] == gold['reward_mean']
  assert f'{gold["reward_mean"]:.1f} ± {gold["reward_std"]:.1f}' in table[5]
  assert set(result['timings']) == {'expert', 'dt', 'gold', 'iql', 'evaluation', 'export'}

  # Learning curves of both students, as a PNG.
  with open(result['learning_curves'], 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  for run in ('gold', 'iql'):
    header = open(os.path.join(workdir, run, 'metrics.csv')).readline()
    assert 'evaluation/reward_mean' in header and 'evaluation/cost_mean' in header

  # The exported student is the GOLD student, and it is much faster than the DT.
  student = export.NumpyPolicy.load(result['student'])
  assert student.metadata['task'] == 'Car-Circle'
  assert student(np.zeros(student.obs_dim, np.float32)).shape == (student.act_dim,)
  latency = result['latency']
  assert latency['student_max_abs_error'] < 1e-5
  assert latency['student_numpy_ms'] < latency['dt_ms']
