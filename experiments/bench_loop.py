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
are the guide's. Compilation happens before, in a throwaway loop. Shared machines drift, so
each loop's rate is divided by a raw rate measured right around it, on a separate copy of the
vector env (half the steps before, half after).

  python -m experiments.bench_loop --task=Car-Circle --num_envs=16
"""

import math
import time
from typing import Tuple

from absl import app
from absl import flags
import jax
import numpy as np

from gold_jax import envs, jsrl
from gold_jax.agents import dt, iql
from gold_jax.data.replay import ReplayBuffer
from gold_jax.loop import PIPELINE_MODES, GuidedLoop, LoopConfig
from gold_jax.policies import DTPolicy, MLPPolicy, RandomPolicy, init_state

_TASK = flags.DEFINE_string('task', 'Car-Circle', 'Task name.')
_NUM_ENVS = flags.DEFINE_integer('num_envs', 16, 'Env copies stepped together.')
_STEPS = flags.DEFINE_integer('steps', 8000, 'Env steps timed per measurement (rounded up to '
                              'whole episodes of every env).')
_HORIZON = flags.DEFINE_integer('horizon', 150, 'Guide horizon h (steps per episode).')
_UTD = flags.DEFINE_float('utd', 1.0, 'Updates per env step in the full loop.')
_TRAIN_EVERY = flags.DEFINE_integer('train_every', 64, 'Env steps between update calls.')
_BATCH = flags.DEFINE_integer('batch_size', 256, 'Transitions per update.')
_PIPELINE = flags.DEFINE_list('pipeline', 'off,process,thread',
                              'Loop modes to measure: off (sequential), process, thread.')
_MAX_EPISODE = flags.DEFINE_integer('max_episode_steps', None,
                                    'Episode length override (default: the task\'s).')

Rate = Tuple[float, float]  # (steps per wall-clock second, steps per process-CPU second)


def _rate(fn, steps: int) -> Rate:
  """(wall-clock, process-CPU-time) steps per second: the CPU rate is robust to other load."""
  wall, cpu = time.perf_counter(), time.process_time()
  fn(steps)
  return steps / (time.perf_counter() - wall), steps / (time.process_time() - cpu)


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

  def rate(self, steps: int) -> Rate:
    return _rate(self._run, steps)


def make_loop(env, utd: float, learning_starts: int, horizon: int,
              pipeline: str) -> GuidedLoop:
  key = jax.random.PRNGKey(0)
  guide_state = init_state(dt, key, env.obs_dim, env.act_dim, dt.Config())
  guide = DTPolicy(guide_state, target_return=300.0)
  state = init_state(iql, key, env.obs_dim, env.act_dim, iql.Config())
  student = MLPPolicy(iql, state, deterministic=False)
  policy = jsrl.JSRLPolicy(guide, student, horizon=horizon)
  buffer = ReplayBuffer(env.obs_dim, env.act_dim, 1_000_000)
  config = LoopConfig(utd=utd, train_every=_TRAIN_EVERY.value, batch_size=_BATCH.value,
                      learning_starts=learning_starts, pipeline=pipeline)
  return GuidedLoop(env, policy, student, iql, state, buffer, None, config)


def loop_rate(env, raw: RawEnv, steps: int, train: bool, horizon: int,
              pipeline: str) -> Tuple[Rate, Rate]:
  """(loop rate, raw rate measured around it) for `steps` env steps from fresh episodes."""
  learning_starts = 0 if train else 1 << 62
  warm = make_loop(env, _UTD.value, learning_starts, horizon, pipeline)
  warm.run(max(2 * _TRAIN_EVERY.value, _BATCH.value))  # Compiles acting (and the update).
  jax.block_until_ready(warm.state)
  warm.close()
  runner = make_loop(env, _UTD.value, learning_starts, horizon, pipeline)
  before = raw.rate(steps // 2)
  rate = _rate(lambda n: (runner.run(n), jax.block_until_ready(runner.state)), steps)
  runner.close()
  after = raw.rate(steps // 2)
  return rate, tuple((a + b) / 2 for a, b in zip(before, after))


def main(argv):
  del argv
  options = {}
  if _MAX_EPISODE.value is not None:
    options['max_episode_steps'] = _MAX_EPISODE.value
  env = envs.make_vec(_TASK.value, _NUM_ENVS.value, seed=0, **options)
  raw = RawEnv(envs.make_vec(_TASK.value, _NUM_ENVS.value, seed=1000, **options))
  episode = env.spec.max_episode_steps
  block = episode * env.num_envs
  steps = block * max(1, math.ceil(_STEPS.value / block))
  print(f'task {_TASK.value}, {env.num_envs} envs, episodes of {episode} steps, {steps} env '
        f'steps per measurement, guide horizon {_HORIZON.value}, devices {jax.devices()}')
  first = raw.rate(steps)
  print(f'{"raw env:":32s} {first[0]:9.1f} steps/s wall, {first[1]:9.1f} per CPU-s'
        '  (target: collection >= 80%)')
  unknown = sorted(set(_PIPELINE.value) - set(PIPELINE_MODES))
  if unknown:
    raise app.UsageError(f'--pipeline: unknown modes {unknown}; known: {PIPELINE_MODES}')
  titles = {'off': 'sequential:',
            'process': 'pipelined (two halves, guide in its own process):',
            'thread': 'pipelined (two halves, guide on a worker thread):'}
  for pipeline in _PIPELINE.value:
    print(titles[pipeline])
    for name, horizon, train in (('collection', _HORIZON.value, False),
                                 ('  student only', 0, False), ('  guide only', episode, False),
                                 (f'full loop (utd {_UTD.value:g})', _HORIZON.value, True)):
      rate, around = loop_rate(env, raw, steps, train=train, horizon=horizon, pipeline=pipeline)
      label = f'  {name} (h={horizon}):'
      if pipeline == 'process':  # This process's CPU time leaves out the guide's process.
        print(f'{label:32s} {rate[0]:9.1f} steps/s wall,       n/a per CPU-s  '
              f'({100 * rate[0] / around[0]:.0f}% of raw {around[0]:.0f}/s measured around it)')
        continue
      print(f'{label:32s} {rate[0]:9.1f} steps/s wall, {rate[1]:9.1f} per CPU-s  '
            f'({100 * rate[0] / around[0]:.0f}% / {100 * rate[1] / around[1]:.0f}% of raw '
            f'{around[0]:.0f}/s measured around it)')
  raw.env.close()
  env.close()


if __name__ == '__main__':
  app.run(main)
