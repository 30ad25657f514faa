"""Collection strategies: how `gold_jax.loop.GuidedLoop` steps its envs and queries the guide.

`GuidedLoop` books what happens (buffer writes, episodes, λ, training, metrics, saved state);
a strategy from this module decides how one collection step is carried out. It owns the
*lanes*, groups of envs each with the `JSRLPolicy` acting on its episodes, and calls back
`record(lanes, obs, action, source, result)` once per env step it takes:

- `Sequential` (`pipeline='off'`): one lane, the whole vector env; the policy acts, then all
  envs step.
- `Pipelined` (`pipeline='thread'` or `'process'`): two lanes over `env.split(2)` that take
  turns: while one half's simulators step on the host thread, the guide's forward pass for the
  other half runs elsewhere (`JSRLPolicy.prefetch`). `'process'` serves the guide from its own
  process (`gold_jax.remote.PolicyServer`; the guide must pickle, as `DTPolicy` and
  `MLPPolicy` do), so the simulators, which hold the GIL through each physics call, never delay
  it; `'thread'` runs it on a one-thread executor of this process (XLA releases the GIL while
  it computes, but every dispatch and transfer has to win the GIL back). Inside `running()`
  the simulators and the guide keep to different cores (Linux, two cores or more) and, with a
  guide thread, the GIL changes hands more often (`PIPELINE_SWITCH_INTERVAL`). Steps in which
  no guide acts (the student phase) step all envs at once, as sequentially. With
  deterministic policies the transitions are those of `Sequential`; who acts is decided when
  the guide's pass starts, before the previous step's curriculum update, so a change of the
  curriculum reaches half of the envs one collection step late.

`make_strategy(pipeline, env, policy)` picks one. Call `close()` when done (it waits for a
prefetched guide step and stops a guide thread or process).
"""

import concurrent.futures
import contextlib
import dataclasses
import os
import sys
from typing import Any, Callable, Iterator, List, Optional

import numpy as np

from gold_jax.data.replay import GUIDE, STUDENT
from gold_jax.jsrl import JSRLPolicy
from gold_jax.remote import PolicyServer


PIPELINE_MODES = ('off', 'thread', 'process')

# GIL hand-over interval while pipelining with a guide thread: the thread gets the GIL back
# within about one simulator call instead of Python's default 5 ms.
PIPELINE_SWITCH_INTERVAL = 0.0005


@dataclasses.dataclass
class Lane:
  """A group of envs with the policy acting on its episodes (the whole env unless pipelined).

  `obs` holds the lane's current observations (None before the first step); `episodes` is
  the loop's bookkeeping for the lane (an `EpisodeTracker`, set by `GuidedLoop`).
  """
  env: Any
  policy: JSRLPolicy
  episodes: Any = None
  obs: Optional[np.ndarray] = None


# `record(lanes, obs, action, source, result)`: books one env step of `lanes` (consecutive
# rows of `obs`), `result` being the env's `step` return.
Record = Callable[[List[Lane], np.ndarray, np.ndarray, np.ndarray, tuple], None]


def set_thread_cpus(cpus) -> None:
  """Restricts the calling thread to the cores `cpus` (Linux; elsewhere nothing happens)."""
  if cpus and hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, cpus)


def pipeline_cpus():
  """(simulator thread's cores, guide thread's cores): apart when this process has >= 2."""
  cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else []
  if len(cpus) < 2:
    return None, None
  return {cpus[0]}, set(cpus[1:])


def _lane_step(lane: Lane, following: Optional[Lane], executor, record: Record) -> int:
  """Acts and steps `lane`'s envs; starts `following`'s guide meanwhile. Returns the number
  of guide steps."""
  action = lane.policy.act(lane.obs)
  if following is not None:
    following.policy.prefetch(following.obs, executor)
  source = np.where(lane.policy.from_guide, GUIDE, STUDENT).astype(np.int8)
  record([lane], lane.obs, action, source, lane.env.step(action))
  return int(np.count_nonzero(source == GUIDE))


class CollectionStrategy:
  """What the strategies share: the lanes, their observations, `start`, `running`, `close`."""

  pipelined = False
  lanes: List[Lane]

  @property
  def obs(self) -> Optional[np.ndarray]:
    """The current observations of all envs (None before the first step)."""
    if self.lanes[0].obs is None:
      return None
    return np.concatenate([lane.obs for lane in self.lanes])

  def start(self, obs: np.ndarray) -> None:
    """Hands the observations of freshly reset envs to the lanes and resets their policies."""
    for lane, rows in zip(self.lanes, np.split(np.arange(len(obs)), len(self.lanes))):
      lane.obs = obs[rows]
      lane.policy.reset(lane.env.num_envs)

  def step(self, record: Record) -> int:
    """One step of every env, booked through `record`; returns the number of guide steps."""
    raise NotImplementedError

  @contextlib.contextmanager
  def running(self) -> Iterator[None]:
    """Wraps a run of collection steps (host settings that only hold while it runs)."""
    yield

  def close(self) -> None:
    """Waits for (and drops) prefetched guide steps; the strategy cannot step after."""
    for lane in self.lanes:
      lane.policy.drain()


class Sequential(CollectionStrategy):
  """`pipeline='off'`: one lane over the whole env; the policy acts, then every env steps."""

  def __init__(self, env, policy: JSRLPolicy):
    self.lanes = [Lane(env, policy)]

  def step(self, record: Record) -> int:
    return _lane_step(self.lanes[0], None, None, record)


class Pipelined(CollectionStrategy):
  """`pipeline='thread'` or `'process'`: two halves of the envs (`env.split(2)`) take turns,
  the guide computing for one half while the other steps (module docstring)."""

  pipelined = True

  def __init__(self, env, policy: JSRLPolicy, mode: str = 'thread'):
    if mode not in PIPELINE_MODES[1:]:
      raise ValueError(f'Pipelined mode must be one of {PIPELINE_MODES[1:]}, got {mode!r}')
    if not hasattr(env, 'split'):
      raise ValueError('pipeline needs a vector env with split() (gold_jax.envs.make_vec)')
    self.mode, self.env = mode, env
    self.student = policy.student  # Shared by the halves' policies (`JSRLPolicy.split`).
    views, policies = env.split(2), policy.split(2)
    self.executor, self.server = None, None
    self.env_cpus, guide_cpus = pipeline_cpus()
    if mode == 'process' and policy.guide is not None:
      self.server = PolicyServer(policy.guide, cpus=guide_cpus)
      for part in policies:
        part.guide = self.server.policy()
      for part, view in zip(policies, views):  # Waits: server up, acting compiled.
        part.guide.warm_up(np.zeros((view.num_envs, env.obs_dim), np.float32))
    else:
      self.executor = concurrent.futures.ThreadPoolExecutor(
          1, 'guide', initializer=set_thread_cpus, initargs=(guide_cpus,))
    self.lanes = [Lane(e, p) for e, p in zip(views, policies)]

  def step(self, record: Record) -> int:
    if not any(lane.policy.needs_guide() for lane in self.lanes):
      self._student_step(record)
      return 0
    guide_steps = 0
    for i, lane in enumerate(self.lanes):
      following = self.lanes[(i + 1) % len(self.lanes)]
      guide_steps += _lane_step(lane, following, self.executor, record)
    return guide_steps

  def _student_step(self, record: Record) -> None:
    """A step in which no guide acts: the student and the envs in one call each."""
    obs = self.obs
    student_action = self.student.act(obs)
    action = np.concatenate([
        lane.policy.act(lane.obs, student_action=part)
        for lane, part in zip(self.lanes, np.split(student_action, len(self.lanes)))])
    source = np.full(len(obs), STUDENT, np.int8)
    record(self.lanes, obs, action, source, self.env.step(action))

  @contextlib.contextmanager
  def running(self) -> Iterator[None]:
    """The simulators (this thread) and the guide keep to different cores; a guide thread
    gets the GIL back sooner. Both settings are restored on exit."""
    interval = sys.getswitchinterval()
    cpus = os.sched_getaffinity(0) if self.env_cpus else None
    if self.executor is not None:
      sys.setswitchinterval(min(interval, PIPELINE_SWITCH_INTERVAL))
    set_thread_cpus(self.env_cpus)
    try:
      yield
    finally:
      sys.setswitchinterval(interval)
      set_thread_cpus(cpus)

  def close(self) -> None:
    """Also stops the guide thread or process."""
    super().close()
    if self.executor is not None:
      self.executor.shutdown()
      self.executor = None
    if self.server is not None:
      self.server.close()
      self.server = None


def make_strategy(pipeline: str, env, policy: JSRLPolicy) -> CollectionStrategy:
  """The strategy for `LoopConfig.pipeline`: `Sequential` for 'off', else `Pipelined`."""
  if pipeline not in PIPELINE_MODES:
    raise ValueError(f'pipeline must be one of {PIPELINE_MODES}, got {pipeline!r}')
  if pipeline == 'off':
    return Sequential(env, policy)
  return Pipelined(env, policy, pipeline)
