"""The online training loop: vector env <-> guide/student policy <-> replay buffer <-> learner.

This is the only place that steps environments during training. Each collection step:

1. the `JSRLPolicy` acts on the `n` envs (guide or student per env, by the schedule);
2. the vector env steps; episodes that end are reset automatically;
3. the `n` transitions go to the replay buffer, labelled `GUIDE` or `STUDENT` by who acted,
   with `terminated` stored for bootstrapping (Gymnasium semantics: a truncated episode still
   bootstraps from its final observation, `info["final_observation"]`);
4. the schedule (curriculum) sees the new env step count.

Every `train_every` env steps the learner makes `k = utd * train_every` updates in one fused
`update_n` call on `k` batches sampled at once, so the update-to-data ratio is `utd`.

A learner with an adaptive cost multiplier (`learner.adapts_lambda(config)`: SAC-Lagrangian,
IQL with `multiplier.rule` 'lagrange' or 'pid') gets λ from measured costs, as PID-Lagrangian
implementations do: per finished episode the loop records the cost incurred on the student's steps and their number,
and after an `update_n` call that follows newly finished episodes it calls
`learner.update_lambda(state, episode_cost)`, where `episode_cost` is the student's cost per own
step over its last `cost_window` episodes times their mean length. The guide's steps never
count; an episode the student owns entirely counts with its plain cost. λ first moves after
`multiplier.start_step` env steps.

How steps 1-2 are carried out is the job of a collection strategy (`gold_jax.collection`):
`GuidedLoop` keeps the bookkeeping (buffer writes, episode tracking, λ updates, training,
metrics, saved state) and hands each step to the strategy that `LoopConfig.pipeline` picks
(`collection.make_strategy`). With 'off' (`Sequential`) the policy acts on all envs, then they
step. With 'process' or 'thread' (`Pipelined`) two halves of the envs (`SafeVecEnv.split`) take
turns, the guide's forward pass for one half running in its own process or on a worker thread
while the other half's simulators step; on a CPU whose second core would idle during a
simulator step, this hides much of a Decision Transformer guide's cost
(`experiments/bench_loop.py`). With deterministic policies the transitions are those of the
sequential loop (tested); a change of the curriculum reaches half of the envs one collection
step late (details in `gold_jax.collection`). Call `close()` when done with a pipelined loop
(it stops the guide's worker thread or process).
"""

import collections
import dataclasses
import glob
import os
import re
import time
import zipfile
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import jax
import numpy as np

from gold_jax.agents.common import check_finite
from gold_jax.checkpoints import CheckpointManager, checkpoint_dir
from gold_jax.collection import PIPELINE_MODES, CollectionStrategy, Lane, make_strategy
from gold_jax.data.replay import GUIDE, STUDENT, ReplayBuffer  # GUIDE: re-exported.
from gold_jax.errors import CorruptCheckpointError
from gold_jax.jsrl import JSRLPolicy
from gold_jax.policies import uncommitted


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  utd: Optional[float] = 1.0  # Updates per env step (update-to-data ratio); None: the
                              # learner's own rate (`distill`: the CVPO preset's), else 1.
  train_every: int = 50  # Env steps between fused updates; a multiple of the number of envs.
  batch_size: int = 256  # Transitions per update.
  learning_starts: int = 1000  # Env steps collected before the first update.
  pipeline: str = 'off'  # 'off', or step two halves of the envs in turn with the guide
                         # computing for one half while the other steps: in its own 'process'
                         # (`gold_jax.remote`) or on a worker 'thread'.
  cost_window: int = 5  # Recent episodes whose student cost drives an adaptive λ.

  def updates_per_call(self) -> int:
    """`k`: how many updates each `update_n` call makes."""
    return int(round(self.utd * self.train_every))

  def validate(self, num_envs: int = 1) -> None:
    if self.utd is None or self.utd <= 0:
      raise ValueError(f'utd (updates per env step) must be positive, got {self.utd}')
    if self.train_every <= 0 or self.train_every % num_envs:
      raise ValueError(f'train_every ({self.train_every}) must be a positive multiple of the '
                       f'number of envs ({num_envs})')
    k = self.utd * self.train_every
    if abs(k - round(k)) > 1e-9 or round(k) < 1:
      raise ValueError(f'utd * train_every must be a positive integer, got {k}')
    if self.batch_size <= 0:
      raise ValueError(f'batch_size must be positive, got {self.batch_size}')
    if self.learning_starts < 0:
      raise ValueError(f'learning_starts must be >= 0, got {self.learning_starts}')
    if self.pipeline not in PIPELINE_MODES:
      raise ValueError(f'pipeline must be one of {PIPELINE_MODES}, got {self.pipeline!r}')
    if self.cost_window <= 0:
      raise ValueError(f'cost_window must be positive, got {self.cost_window}')
    if self.pipeline != 'off' and (num_envs < 2 or num_envs % 2):
      raise ValueError(f'pipeline needs an even number of envs (two halves), got {num_envs}')


def final_observations(next_obs: np.ndarray, done: np.ndarray, info: Dict[str, Any]
                       ) -> np.ndarray:
  """The observations the transitions end in: `final_observation` where an episode ended."""
  if not done.any():
    return next_obs
  final = np.array(next_obs, copy=True)
  finals = info.get('final_observation')
  if finals is None:
    raise KeyError('the vector env autoreset an episode without info["final_observation"]')
  for i in np.flatnonzero(done):
    final[i] = finals[i]
  return final


def episode_success(info: Dict[str, Any], done: np.ndarray) -> np.ndarray:
  """Per env: whether the episode that ended this step succeeded (False where none ended).

  Reads the final step's info (`info["final_info"][i]["success"]`) of a gymnasium vector env.
  """
  success = np.zeros(done.shape, bool)
  final_info = info.get('final_info')
  if final_info is None:
    return success
  for i in np.flatnonzero(done):
    if final_info[i] is not None:
      success[i] = bool(final_info[i].get('success', False))
  return success


class Episode(NamedTuple):
  """A finished training episode; `student_*` count only the steps the student acted."""
  ret: float
  cost: float
  length: int
  success: bool
  student_cost: float
  student_steps: int


class EpisodeTracker:
  """Running return, cost, length and success of `n` parallel episodes, and the cost and steps
  of the student's share of them; keeps finished ones."""

  def __init__(self, n: int):
    self.ret, self.cost, self.student_cost = np.zeros(n), np.zeros(n), np.zeros(n)
    self.length, self.student_steps = np.zeros(n, np.int64), np.zeros(n, np.int64)
    self.success = np.zeros(n, bool)
    self.finished = []  # `Episode`s finished since the last `pop_metrics`.

  def add(self, reward, cost, done, success, student) -> List[Episode]:
    """Books one step (`student`: rows where the student acted); returns the episodes it ended."""
    self.ret += reward
    self.cost += cost
    self.length += 1
    self.success |= success
    self.student_cost += np.where(student, cost, 0.0)
    self.student_steps += student
    ended = [Episode(float(self.ret[i]), float(self.cost[i]), int(self.length[i]),
                     bool(self.success[i]), float(self.student_cost[i]),
                     int(self.student_steps[i])) for i in np.flatnonzero(done)]
    self.finished.extend(ended)
    for field in (self.ret, self.cost, self.student_cost, self.length, self.student_steps,
                  self.success):
      field[done] = 0
    return ended


class GuidedLoop:
  """Collects with a guide/student mix into `buffer` and trains `learner` on it.

  Args:
    env: a vector env (`gold_jax.envs.make_vec`) with `num_envs` and autoreset.
    policy: the `JSRLPolicy` that acts; its student is `student`.
    student: the `MLPPolicy` acting with the learner's current state.
    learner: the learner module (`gold_jax.agents.iql`, `cvpo`, ...) providing `update_n`.
    state: the learner state.
    buffer: the replay buffer written to and sampled from.
    schedule: `FixedCurriculum`, `AutoCurriculum` or `ProbSchedule` (`jsrl.py`), or None.
    config: `LoopConfig`.
    seed: seeds the buffer sampling and the env resets.
  """

  def __init__(self, env, policy: JSRLPolicy, student, learner, state, buffer: ReplayBuffer,
               schedule, config: LoopConfig, seed: int = 0):
    config.validate(env.num_envs)
    self.env, self.policy, self.student, self.learner = env, policy, student, learner
    self.state, self.buffer, self.schedule, self.config = state, buffer, schedule, config
    self.num_envs = env.num_envs
    self.seed = seed
    self.rng = np.random.default_rng(seed)
    self.step = 0  # Env steps collected (summed over envs).
    self.num_updates = 0
    self._since_update = 0
    adapts = getattr(learner, 'adapts_lambda', None)
    self.adaptive_lambda = bool(adapts and adapts(state.config))
    # λ stays put for the first `multiplier.start_step` env steps (a reward-first phase).
    self.lambda_start = 0
    if self.adaptive_lambda:  # The learner config's `multiplier` is a `lagrange.Config`.
      self.lambda_start = getattr(getattr(state.config, 'multiplier', None), 'start_step', 0)
    # (student cost, student steps, length) of the last `cost_window` episodes with student steps.
    self.student_episodes = collections.deque(maxlen=config.cost_window)
    self._new_student_episodes = 0  # Of them, finished since the last λ update.
    # How the envs step and the guide is queried (`gold_jax.collection`).
    self.collection: CollectionStrategy = make_strategy(config.pipeline, env, policy)
    for lane in self.lanes:
      lane.episodes = EpisodeTracker(lane.env.num_envs)
    self._reset_window()

  # -- collection ---------------------------------------------------------------------------

  @property
  def lanes(self) -> List[Lane]:
    """The collection strategy's groups of envs, each with its policy and episodes."""
    return self.collection.lanes

  @property
  def pipelined(self) -> bool:
    """Whether two halves of the envs take turns (`LoopConfig.pipeline` is not 'off')."""
    return self.collection.pipelined

  @property
  def obs(self) -> Optional[np.ndarray]:
    """The current observations of all envs (None before the first step)."""
    return self.collection.obs

  def start(self) -> None:
    """Starts fresh episodes in every env (seeded by the step count, so resumes are seeded)."""
    obs, _ = self.env.reset(seed=self.seed * 1_000_003 + self.step)
    self.collection.start(obs)
    for lane in self.lanes:
      lane.episodes = EpisodeTracker(lane.env.num_envs)
    self._apply_schedule()

  def _apply_schedule(self) -> None:
    if self.schedule is not None:
      self.schedule.on_step(self.step)
      for lane in self.lanes:
        self.schedule.apply(lane.policy)

  def _record(self, lanes, obs, action, source, result) -> None:
    """Books one env step of `lanes` (consecutive rows of `obs`) into the buffer and policies."""
    next_obs, reward, cost, terminated, truncated, info = result
    terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
    done = terminated | truncated
    self.buffer.add(obs, action, reward, cost, final_observations(next_obs, done, info),
                    terminated, source, done=done)
    success = episode_success(info, done)
    start = 0
    for lane in lanes:
      rows = slice(start, start + lane.env.num_envs)
      start = rows.stop
      lane.policy.observe(action[rows], reward[rows], cost[rows])
      for episode in lane.episodes.add(reward[rows], cost[rows], done[rows], success[rows],
                                       source[rows] == STUDENT):
        if episode.student_steps:
          self.student_episodes.append(
              (episode.student_cost, episode.student_steps, episode.length))
          self._new_student_episodes += 1
      if done[rows].any():
        lane.policy.restart(done[rows])
      lane.obs = next_obs[rows]

  def collect_step(self) -> None:
    """One step of every env; the transitions go to the buffer labelled by who acted."""
    if self.lanes[0].obs is None:
      self.start()
    guide_steps = self.collection.step(self._record)
    self.step += self.num_envs
    self._window['env_steps'] += self.num_envs
    self._window['guide_steps'] += guide_steps
    self._apply_schedule()

  # -- learning -----------------------------------------------------------------------------

  def ready_to_learn(self) -> bool:
    return (self.step >= self.config.learning_starts
            and len(self.buffer) >= self.config.batch_size)

  def train(self) -> None:
    """`k = utd * train_every` fused updates on `k` freshly sampled batches (n-step ones when
    the learner's config asks for `n_step` > 1, discounted by its `discount`)."""
    k = self.config.updates_per_call()
    learner_config = getattr(self.state, 'config', None)
    batches = self.buffer.sample_stacked(
        k, self.config.batch_size, self.rng, n_step=getattr(learner_config, 'n_step', 1),
        discount=getattr(learner_config, 'discount', 1.0), stride=self.num_envs)
    self.state, metrics = self.learner.update_n(self.state, batches)
    self.student.state = self.state
    metrics = jax.device_get(metrics)
    self.num_updates += k
    check_finite(metrics, self.num_updates)
    for name, value in metrics.items():
      self._window['sums'][name] = self._window['sums'].get(name, 0.0) + float(value)
    self._window['train_calls'] += 1
    if (self.adaptive_lambda and self._new_student_episodes
        and self.step >= self.lambda_start):
      self.update_lambda()

  def student_episode_cost(self) -> float:
    """The student's cost per own step over its recent episodes times their mean length."""
    cost, steps, length = np.asarray(self.student_episodes, np.float64).sum(0)
    return float(cost / steps * length / len(self.student_episodes))

  def update_lambda(self) -> None:
    """Steps the learner's λ on `student_episode_cost()` (`learner.update_lambda`)."""
    episode_cost = self.student_episode_cost()
    self.state, info = self.learner.update_lambda(self.state, np.float32(episode_cost))
    self.student.state = self.state
    self._new_student_episodes = 0
    self._window['lambda'] = {'training/student_episode_cost': episode_cost,
                              **{k: float(v) for k, v in jax.device_get(info).items()}}

  def run(self, until_step: int, progress=None,
          should_stop: Optional[Callable[[], bool]] = None) -> None:
    """Collects (and trains, once ready) until `step >= until_step` or `should_stop()`.

    `should_stop` is checked between steps, where the loop's state is consistent (a stop
    requested by a signal handler never cuts an update or a buffer write in half).
    """
    with self.collection.running():  # Pipelined: core affinity and GIL switch interval.
      self._run(until_step, progress, should_stop)

  def close(self) -> None:
    """Stops the pipelined loop's guide thread or process (the loop cannot collect after)."""
    self.collection.close()

  def _run(self, until_step: int, progress, should_stop) -> None:
    while self.step < until_step:
      if should_stop is not None and should_stop():
        return
      self.collect_step()
      if progress is not None:
        progress.update(self.num_envs)
      if not self.ready_to_learn():
        self._since_update = 0
        continue
      self._since_update += self.num_envs
      if self._since_update >= self.config.train_every:
        self._since_update -= self.config.train_every
        self.train()

  # -- reporting and state ------------------------------------------------------------------

  def _reset_window(self) -> None:
    self._window = {'env_steps': 0, 'guide_steps': 0, 'sums': {}, 'train_calls': 0,
                    'lambda': {}, 'time': time.perf_counter()}

  def pop_metrics(self) -> Dict[str, float]:
    """Training metrics since the last call: update means, episodes, guide share, speed."""
    w = self._window
    metrics = {name: total / w['train_calls'] for name, total in w['sums'].items()}
    metrics.update(w['lambda'])  # The last λ update's inputs.
    steps = max(w['env_steps'], 1)
    metrics['training/guide_share'] = w['guide_steps'] / steps
    metrics['training/student_share'] = 1.0 - w['guide_steps'] / steps
    metrics['training/buffer_guide_fraction'] = self.buffer.source_fraction()['guide']
    metrics['training/env_steps_per_sec'] = w['env_steps'] / max(
        time.perf_counter() - w['time'], 1e-9)
    metrics['training/num_updates'] = float(self.num_updates)
    if self.schedule is not None:
      metrics.update(self.schedule.metrics())
    elif self.policy.guide is None:
      metrics['training/horizon'] = 0.0
    finished = [episode for lane in self.lanes for episode in lane.episodes.finished]
    if finished:
      ret, cost, length, success = map(np.asarray, list(zip(*finished))[:4])
      metrics['training/episode_return'] = float(ret.mean())
      metrics['training/episode_cost'] = float(cost.mean())
      metrics['training/episode_length'] = float(length.mean())
      metrics['training/episodes'] = float(len(ret))
      if getattr(getattr(self.env, 'spec', None), 'has_success', False):
        metrics['training/success_rate'] = float(success.mean())
      for lane in self.lanes:
        lane.episodes.finished = []
    self._reset_window()
    return metrics

  def state_dict(self) -> Dict[str, Any]:
    """Host-side state as JSON-able values (the learner state and buffer are saved apart)."""
    student_key = getattr(self.student, 'key', None)
    return {
        'step': self.step, 'num_updates': self.num_updates, 'since_update': self._since_update,
        'rng': self.rng.bit_generator.state,
        'policy_rng': [lane.policy.rng.bit_generator.state for lane in self.lanes],
        'student_key': None if student_key is None else np.asarray(student_key).tolist(),
        'schedule': None if self.schedule is None else self.schedule.state_dict(),
        'student_episodes': [list(e) for e in self.student_episodes],
        'new_student_episodes': self._new_student_episodes,
    }

  def load_state_dict(self, state: Dict[str, Any]) -> None:
    """Inverse of `state_dict`; the envs restart with fresh episodes at the next step."""
    self.step, self.num_updates = int(state['step']), int(state['num_updates'])
    self._since_update = int(state['since_update'])
    self.rng.bit_generator.state = state['rng']
    rngs = state['policy_rng']
    rngs = [rngs] if isinstance(rngs, dict) else rngs  # One policy when not pipelined.
    if len(rngs) != len(self.lanes):
      raise ValueError(f'the saved loop has {len(rngs)} env groups, this one {len(self.lanes)}: '
                       'resume with the same pipeline setting')
    for lane, rng in zip(self.lanes, rngs):
      lane.policy.rng.bit_generator.state = rng
    if state['student_key'] is not None:
      self.student.key = jax.numpy.asarray(state['student_key'], jax.numpy.uint32)
    if self.schedule is not None:
      self.schedule.load_state_dict(state['schedule'])
    self.student_episodes.clear()
    self.student_episodes.extend(tuple(e) for e in state.get('student_episodes', ()))
    self._new_student_episodes = int(state.get('new_student_episodes', 0))
    for lane in self.lanes:
      lane.policy.reset(lane.env.num_envs)  # Drops a guide step prefetched before the restore.
      lane.obs = None


class LoopCheckpoints:
  """Checkpoints of a `GuidedLoop` run in `workdir/checkpoints`: learner state, replay buffer
  and loop state (step, RNGs, schedule) together, so that a restart resumes the run exactly.

  The buffer of step s is written before the checkpoint of step s, so every listed step has
  its buffer; buffers of steps no longer kept are removed.
  """

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self.directory = checkpoint_dir(workdir, of_run=True)
    self.manager = CheckpointManager(self.directory, max_to_keep=max_to_keep)

  def _replay_path(self, step: int) -> str:
    return os.path.join(self.directory, f'replay_{step}.npz')

  def save(self, runner: GuidedLoop, extra: Dict[str, Any]) -> None:
    step = runner.step
    runner.buffer.save(self._replay_path(step))
    self.manager.save(step, runner.state, extra={'loop': runner.state_dict(), **extra})
    keep = set(self.manager.all_steps())
    for path in glob.glob(os.path.join(self.directory, 'replay_*.npz')):
      if int(re.findall(r'replay_(\d+)\.npz', path)[0]) not in keep:
        os.remove(path)

  def latest_step(self) -> Optional[int]:
    """The newest step whose checkpoint and buffer read back whole; damaged newer ones are
    set aside with a warning (`CheckpointManager.latest_intact_step`)."""
    return self.manager.latest_intact_step(set_aside=True, check=self._check_replay)

  def _check_replay(self, step: int) -> None:
    try:
      with zipfile.ZipFile(self._replay_path(step)) as archive:
        bad = archive.testzip()
    except (OSError, zipfile.BadZipFile) as e:
      raise CorruptCheckpointError(f'{self._replay_path(step)}: unreadable ({e})') from e
    if bad is not None:
      raise CorruptCheckpointError(f'{self._replay_path(step)}: corrupt entry {bad}')

  def restore(self, runner: GuidedLoop) -> Dict[str, Any]:
    """Puts the latest intact checkpoint into `runner`; returns the `extra` saved with it."""
    step = self.latest_step()
    runner.state = uncommitted(self.manager.restore(runner.state, step))
    runner.student.state = runner.state
    extra = self.manager.read_metadata(step)['extra']
    buffer = ReplayBuffer.load(self._replay_path(step))
    if buffer.capacity < runner.buffer.capacity:  # The run was extended to a larger budget.
      buffer = buffer.grown(runner.buffer.capacity)
    runner.buffer = buffer
    runner.load_state_dict(extra['loop'])
    return extra

  def close(self) -> None:
    self.manager.close()
