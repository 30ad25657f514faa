"""Smoke test of the loop benchmark: every measurement runs, sequential and both pipelines."""

from absl import app
import pytest

from experiments import bench_loop
from launcher_checks import parsed_flags


def test_main_prints_every_rate(capsys):
  argv = ['bench', '--num_envs=2', '--steps=8', '--max_episode_steps=4', '--train_every=2',
          '--batch_size=4', '--horizon=2', '--repeats=2']
  with parsed_flags(bench_loop.define_flags, argv):
    bench_loop.main(argv[:1])
  out = capsys.readouterr().out
  assert 'episodes of 4 steps, 8 env steps per measurement' in out
  for loop in ('collection (h=2)', 'student only (h=0)', 'guide only (h=4)', 'full loop'):
    assert loop in out
  rates = [line for line in out.splitlines() if 'of raw' in line]
  assert len(rates) == 12  # Four loops, each sequential, in a guide process, on a thread.
  for mode in ('sequential:', 'own process:', 'worker thread:'):
    assert sum(mode in line for line in rates) == 4
  assert all(float(line.split(':')[1].split()[0]) > 0 for line in rates)


def test_bad_flags_are_refused():
  for argv in (['bench', '--pipeline=off,fast'], ['bench', '--repeats=0']):
    with parsed_flags(bench_loop.define_flags, argv):
      with pytest.raises(app.UsageError):
        bench_loop.main(argv[:1])
