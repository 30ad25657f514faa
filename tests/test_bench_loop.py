"""Smoke test of the loop benchmark: every measurement runs, sequential and both pipelines."""

from absl import flags

from experiments import bench_loop


def test_main_prints_every_rate(capsys):
  argv = ['bench', '--num_envs=2', '--steps=8', '--max_episode_steps=4', '--train_every=2',
          '--batch_size=4', '--horizon=2']
  flags.FLAGS(argv)
  try:
    bench_loop.main(argv[:1])
  finally:
    flags.FLAGS.unparse_flags()
  out = capsys.readouterr().out
  assert 'episodes of 4 steps, 8 env steps per measurement' in out
  assert 'sequential:' in out and 'own process' in out and 'worker thread' in out
  rates = [line for line in out.splitlines() if 'of raw' in line]
  assert len(rates) == 12  # Collection, student, guide and full loop; off, process, thread.
  assert all(float(line.split(':')[1].split()[0]) > 0 for line in rates)
