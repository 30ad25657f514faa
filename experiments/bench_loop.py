"""Throughput of the GOLD training loop against the bare simulator.

Prints env steps per second of
  1. raw env: the vector env stepped with random actions, nothing else;
  2. collection: the guided loop (a Decision Transformer guide of the released size for the
     first `--horizon` steps of each episode, the 2x256 IQL student after, replay writes),
     no updates; also with the student alone (h = 0) and the guide alone (h = episode);
  3. full loop: collection plus IQL updates at `--utd` (fused every `--train_every` steps).
The collection rate should be at least 80% of the raw rate. Per-step dispatch costs amortise
with `--num_envs`; the DT forward pass (the whole K-step context every step) does not, and on
a CPU it can cost more than the simulator step, so the guide phase is reported apart.

Each loop runs sequential and pipelined (`LoopConfig(pipeline=...)`: two halves of the envs in
turn, the guide's forward pass for one half computing while the other half's simulators step,
in the guide's own process or on a worker thread); `--pipeline` picks which are measured.

How it measures: every loop starts fresh episodes and runs whole episodes (`--steps` is
rounded up to a multiple of episode length x envs), so h = 150 of 300 means half of the steps
are the guide's. Compilation happens before, in a throwaway loop (a guide process compiles
when the loop is built, before the clock starts). Shared machines drift, so each loop's rate
is divided by a raw rate measured right around it, on a separate copy of the vector env (half
the steps before, half after), and each collection loop runs `--repeats` times with the modes
interleaved; the median and range of those ratios are printed.

  python -m experiments.bench_loop --task=Car-Circle --num_envs=16
"""

import math
import time
from typing import Tuple

from absl import app
from absl import flags
import jax
import numpy as np

from gold_jax import envs, jsrl, launch
from gold_jax.agents import dt, iql
from gold_jax.data.replay import ReplayBuffer
from gold_jax.loop import PIPELINE_MODES, GuidedLoop, LoopConfig
from gold_jax.networks.precision import MATMUL_DTYPES
from gold_jax.policies import DTPolicy, MLPPolicy, RandomPolicy, init_state

FLAGS = flags.FLAGS


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  kw = {'flag_values': fv}
  flags.DEFINE_string('task', 'Car-Circle', 'Task name.', **kw)
  flags.DEFINE_integer('num_envs', 16, 'Env copies stepped together.', **kw)
  flags.DEFINE_integer('steps', 4800, 'Env steps timed per measurement (rounded up to whole '
                       'episodes of every env).', **kw)
  flags.DEFINE_integer('horizon', 150, 'Guide horizon h (steps per episode).', **kw)
  flags.DEFINE_float('utd', 1.0, 'Updates per env step in the full loop.', **kw)
  flags.DEFINE_integer('train_every', 64, 'Env steps between update calls.', **kw)
  flags.DEFINE_integer('batch_size', 256, 'Transitions per update.', **kw)
  flags.DEFINE_list('pipeline', 'off,process,thread',
                    'Loop modes to measure: off (sequential), process, thread.', **kw)
  flags.DEFINE_enum('guide_matmul_dtype', 'float32', list(MATMUL_DTYPES),
                    "The DT guide's matrix products (dt.Config.matmul_dtype).", **kw)
  flags.DEFINE_integer('repeats', 3, 'Runs of each collection loop per mode (the full loop '
                       'runs once); the median is reported.', **kw)
  flags.DEFINE_integer('max_episode_steps', None,
                       'Episode length override (default: the task\'s).', **kw)


def _rate(fn, steps: int) -> float:
  """Steps per wall-clock second of `fn(steps)`."""
  start = time.perf_counter()
  fn(steps)
  return steps / (time.perf_counter() - start)


class RawEnv:
  """A vector env stepped with fixed random actions: the reference rate."""

  def __init__(self, env):
    self.env = env
    env.reset(seed=0)
    self.actions = RandomPolicy(env.act_dim).act(np.zeros((env.num_envs, 1)))
    self._run(10 * env.num_envs)

  def _run(self, n: int) -> None:
    for _ in range(0, n, self.env.num_envs):
      self.env.step(self.actions)

  def rate(self, steps: int) -> float:
    return _rate(self._run, steps)


def make_loop(env, utd: float, learning_starts: int, horizon: int,
              pipeline: str) -> GuidedLoop:
  key = jax.random.PRNGKey(0)
  guide_config = dt.Config(matmul_dtype=FLAGS.guide_matmul_dtype)
  guide_state = init_state(dt, key, env.obs_dim, env.act_dim, guide_config)
  guide = DTPolicy(guide_state, target_return=300.0)
  state = init_state(iql, key, env.obs_dim, env.act_dim, iql.Config())
  student = MLPPolicy(iql, state, deterministic=False)
  policy = jsrl.JSRLPolicy(guide, student, horizon=horizon)
  buffer = ReplayBuffer(env.obs_dim, env.act_dim, 1_000_000)
  config = LoopConfig(utd=utd, train_every=FLAGS.train_every, batch_size=FLAGS.batch_size,
                      learning_starts=learning_starts, pipeline=pipeline)
  return GuidedLoop(env, policy, student, iql, state, buffer, None, config)


def loop_rate(env, raw: RawEnv, steps: int, train: bool, horizon: int, pipeline: str,
              warm_up: bool) -> Tuple[float, float]:
  """(loop rate, raw rate measured around it) for `steps` env steps from fresh episodes."""
  learning_starts = 0 if train else 1 << 62
  if warm_up:  # Compiles acting (and the update) in this process.
    warm = make_loop(env, FLAGS.utd, learning_starts, horizon, pipeline)
    warm.run(max(2 * FLAGS.train_every, FLAGS.batch_size))
    jax.block_until_ready(warm.state)
    warm.close()
  runner = make_loop(env, FLAGS.utd, learning_starts, horizon, pipeline)  # A guide process
  before = raw.rate(steps // 2)                                             # is warm already.
  rate = _rate(lambda n: (runner.run(n), jax.block_until_ready(runner.state)), steps)
  runner.close()
  after = raw.rate(steps // 2)
  return rate, (before + after) / 2


TITLES = {'off': 'sequential', 'process': 'pipelined, guide in its own process',
          'thread': 'pipelined, guide on a worker thread'}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  unknown = sorted(set(FLAGS.pipeline) - set(PIPELINE_MODES))
  if unknown:
    raise app.UsageError(f'--pipeline: unknown modes {unknown}; known: {PIPELINE_MODES}')
  if FLAGS.repeats < 1:
    raise app.UsageError(f'--repeats must be >= 1, got {FLAGS.repeats}')
  options = {}
  if FLAGS.max_episode_steps is not None:
    options['max_episode_steps'] = FLAGS.max_episode_steps
  env = envs.make_vec(FLAGS.task, FLAGS.num_envs, seed=0, **options)
  raw = RawEnv(envs.make_vec(FLAGS.task, FLAGS.num_envs, seed=1000, **options))
  episode = env.spec.max_episode_steps
  block = episode * env.num_envs
  steps = block * max(1, math.ceil(FLAGS.steps / block))
  print(f'task {FLAGS.task}, {env.num_envs} envs, episodes of {episode} steps, {steps} env '
        f'steps per measurement, guide horizon {FLAGS.horizon}, devices {jax.devices()}')
  print(f'raw env: {raw.rate(steps):.1f} steps/s (target: collection >= 80% of it)')
  loops = (('collection', FLAGS.horizon, False, FLAGS.repeats),
           ('student only', 0, False, FLAGS.repeats),
           ('guide only', episode, False, FLAGS.repeats),
           (f'full loop (utd {FLAGS.utd:g})', FLAGS.horizon, True, 1))
  warmed = set()
  for name, horizon, train, repeats in loops:
    print(f'{name} (h={horizon}): steps/s and % of the raw rate measured around each run, '
          f'median [min-max] of {repeats} run(s), the modes interleaved:')
    runs = {mode: [] for mode in FLAGS.pipeline}
    for _ in range(repeats):
      for mode in FLAGS.pipeline:
        warm_up = (mode, train) not in warmed
        warmed.add((mode, train))
        runs[mode].append(loop_rate(env, raw, steps, train, horizon, mode, warm_up))
    for mode, results in runs.items():
      rates = np.array([rate for rate, _ in results])
      shares = 100 * rates / np.array([around for _, around in results])
      print(f'  {TITLES[mode] + ":":40s} {np.median(rates):8.1f} steps/s  '
            f'{np.median(shares):3.0f}% [{shares.min():.0f}-{shares.max():.0f}%] of raw')
  raw.env.close()
  env.close()


if __name__ == '__main__':
  launch.run(main, define_flags)
