"""Smoke test of the driving-scale benchmark: every launcher it times runs, and the figures add up."""

import json

import pytest

from experiments import bench_driving_scale
from launcher_checks import parsed_flags


def test_main_measures_every_stage_and_projects_the_paper_scale(tmp_path, capsys):
  out = tmp_path / 'figures.json'
  argv = ['bench', '--scenarios=2', '--online_steps=100', f'--workdir={tmp_path / "work"}',
          f'--json_out={out}']
  with parsed_flags(bench_driving_scale.define_flags, argv):
    bench_driving_scale.main(argv[:1])
  printed = capsys.readouterr().out
  for line in ('generation:', 'extraction:', 'online IQL on replay:', 'paper scale'):
    assert line in printed
  figures = json.loads(out.read_text())
  for key in ('generation_w1', 'generation_w2', 'extraction_w1', 'extraction_w2'):
    assert figures[key]['per_minute'] > 0, key
  assert figures['generation_w2']['written'] >= 1
  rate = figures['online']['env_steps_per_sec']
  assert rate > 0 and abs(figures['online']['ms_per_env_step'] * rate - 1000.0) < 1e-6
  paper = figures['paper_scale']
  assert paper['online_hours_one_process'] * 3600 * rate == (
      pytest.approx(300_000 * 15))
  assert paper['generation_hours'] == pytest.approx(
      11_000 / figures['generation_w2']['per_minute'] / 60)
