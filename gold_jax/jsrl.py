"""Jump-Start RL: a guide acts for the first h steps of every episode, the student for the rest.

`JSRLPolicy` mixes two `gold_jax.policies.Policy` objects by timestep (or, for the authors'
released schedule, by a coin flip per step). Three schedules set the mixing as training goes on:

- `FixedCurriculum`: h steps through `stages` (H1 > H2 > ... > 0), `stage_steps` env steps each
  (GOLD, Sec. 4.2).
- `AutoCurriculum`: JSRL's rule (Uchendu et al. 2023, Sec. 4): move to the next stage once the
  moving average of the mixed policy's evaluation return reaches the guide's return (up to a
  tolerance) and, for safe RL, its evaluation cost stays under the limit kappa.
- `ProbSchedule`: each env step is the guide's with probability p0 * exp(-5 t / T) at global
  step t <= T, never afterwards.

`ScheduleConfig` picks and sizes one of them (`make_schedule`). All of it is plain host Python
whose state is a JSON-able dict (`state_dict` / `load_state_dict`), so a resumed run continues
the schedule where it stopped.
"""

import collections
import copy
import dataclasses
import math
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax
import numpy as np

from gold_jax import configs
from gold_jax.policies import Policy


def check_stages(stages: Sequence[int]) -> tuple:
  """Validates a horizon curriculum: non-empty, non-negative integers, non-increasing."""
  stages = tuple(int(h) for h in stages)
  if not stages:
    raise ValueError('the guide curriculum is empty: give at least one horizon, e.g. 0')
  if any(h < 0 for h in stages):
    raise ValueError(f'guide horizons must be >= 0, got {list(stages)}')
  if any(a < b for a, b in zip(stages, stages[1:])):
    raise ValueError(f'guide horizons must not increase from stage to stage, got {list(stages)}')
  return stages


# The default curriculum: the guide acts for (5/6, 4/6, ..., 1/6, 0) of the episode length.
DEFAULT_FRACTIONS = (5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0)


def horizons_from_fractions(fractions: Sequence[float], episode_len: int) -> tuple:
  """Horizons `round(f * T)` of a curriculum given in fractions of the episode length T.

  Fractions lie in [0, 1] and do not increase; a fraction of 1 lets the guide drive whole
  episodes. The result passes `check_stages`.
  """
  fractions = tuple(float(f) for f in fractions)
  if any(not 0.0 <= f <= 1.0 for f in fractions):
    raise ValueError(f'guide fractions must lie in [0, 1], got {list(fractions)}')
  if episode_len <= 0:
    raise ValueError(f'episode length must be positive, got {episode_len}')
  return check_stages([int(round(f * episode_len)) for f in fractions])


class _Prefetched(NamedTuple):
  """A guide step started by `JSRLPolicy.prefetch`, taken by the next `act`."""
  obs: np.ndarray  # The observations passed to `prefetch` (`act` must get the same array).
  may: np.ndarray  # Rows that feed the guide at this step.
  chosen: np.ndarray  # Rows the guide acts on.
  future: Any  # The guide's actions to come (a future; None when no row feeds the guide).


class JSRLPolicy:
  """Acts with `guide` while the episode's timestep is below `horizon`, then with `student`.

  Acts on `n` episodes at once (observations `(n, obs_dim)`), each with its own timestep.
  When `guide_prob` is set, each step of each episode is instead the guide's with that
  probability (the released GOLD schedule), drawn from this policy's own numpy generator.
  `from_guide` holds, after each `act`, which rows the guide chose; the loop labels the
  replay transitions with it. `guide=None` gives the student alone.

  The guide sees every step it may still act on in the current episode (`act` then `observe`
  with the action actually executed, which may be the student's); once no episode can return
  to the guide, it is not queried, which saves its forward pass in the student phase.
  """

  def __init__(self, guide: Optional[Policy], student: Policy, horizon: int = 0,
               guide_prob: Optional[float] = None, seed: int = 0):
    if horizon < 0:
      raise ValueError(f'guide horizon must be >= 0, got {horizon}')
    self.guide, self.student = guide, student
    self.horizon = int(horizon)
    self.guide_prob = guide_prob
    self.rng = np.random.default_rng(seed)
    self.t = np.zeros((0,), np.int64)
    self.from_guide = np.zeros((0,), bool)
    self._guide_fed = False
    self._prefetched: Optional[_Prefetched] = None

  def reset(self, n: int) -> None:
    self.drain()
    self.t = np.zeros((n,), np.int64)
    self.from_guide = np.zeros((n,), bool)
    self.student.reset(n)
    if self.guide is not None:
      self.guide.reset(n)

  def restart(self, done: np.ndarray) -> None:
    """Starts new episodes in the rows where `done` is true (vector-env autoreset)."""
    done = np.asarray(done, bool)
    self.t[done] = 0
    self.student.restart(done)
    if self.guide is not None:
      self.guide.restart(done)

  def _guide_may_act(self) -> np.ndarray:
    """Rows whose episode can still be handed to the guide at this step or later."""
    if self.guide is None:
      return np.zeros(self.t.shape, bool)
    if self.guide_prob is not None:
      return np.full(self.t.shape, self.guide_prob > 0.0)
    return self.t < self.horizon

  def _decide(self):
    """(rows that feed the guide, rows the guide acts on) at this step."""
    may = self._guide_may_act()
    if self.guide_prob is not None and self.guide is not None:
      return may, may & (self.rng.random(self.t.shape) < self.guide_prob)
    return may, may

  def prefetch(self, obs: np.ndarray, executor) -> None:
    """Decides who acts at this step and starts the guide's forward pass on `executor`.

    `executor` is a `concurrent.futures.Executor`; the next `act` (with the same `obs` array)
    takes the guide's actions from it, so the caller can step other envs meanwhile. The
    guide is then used from the executor's thread only until that `act` returns. A guide
    with `act_async` (`gold_jax.remote.RemotePolicy`) computes in its own process instead,
    and `executor` may be None.
    """
    may, chosen = self._decide()
    if not may.any():
      # Nothing to start: `act` decides again (no guide row can appear within a step), and
      # `needs_guide` stays false, so an all-student step can step every env at once.
      self._prefetched = None
      return
    if hasattr(self.guide, 'act_async'):  # A guide in another process (`gold_jax.remote`).
      future = self.guide.act_async(obs)
    else:
      future = executor.submit(self.guide.act, obs)
    self._prefetched = _Prefetched(obs, may, chosen, future)

  def drain(self) -> None:
    """Waits for (and drops) a prefetched guide step."""
    prefetched, self._prefetched = self._prefetched, None
    if prefetched is not None and prefetched.future is not None:
      prefetched.future.result()

  def needs_guide(self) -> bool:
    """Whether the guide is (or may be) queried at this step."""
    return self._prefetched is not None or bool(self._guide_may_act().any())

  def act(self, obs: np.ndarray, student_action: Optional[np.ndarray] = None) -> np.ndarray:
    """Actions for `obs`; `student_action`, when given, stands for `student.act(obs)`."""
    future = None
    if self._prefetched is not None:
      prefetched, self._prefetched = self._prefetched, None
      may, chosen, future = prefetched.may, prefetched.chosen, prefetched.future
      if prefetched.obs is not obs:
        if future is not None:
          future.result()
        raise ValueError('act: got other observations than the ones passed to prefetch')
    else:
      may, chosen = self._decide()
    self.from_guide = chosen
    self._guide_fed = bool(may.any())
    guide_action = None
    if self._guide_fed:
      guide_action = future.result() if future is not None else self.guide.act(obs)
      if chosen.all():
        return guide_action
    if student_action is None:
      student_action = self.student.act(obs)
    if guide_action is None:
      return student_action
    return np.where(chosen[:, None], guide_action, student_action)

  def split(self, parts: int) -> List['JSRLPolicy']:
    """`parts` policies for disjoint groups of episodes (the `split` views of a vector env).

    They share the student (an MLP policy keeps no per-episode state) and the schedule
    settings; each has its own copy of the guide (a DT keeps a context per episode; a guide
    with a `key` gets its own stream) and its own generator for the guide coin flips.
    """
    policies = []
    seeds = self.rng.integers(0, 2**63, size=int(parts))
    for k, seed in enumerate(seeds):
      guide = None if self.guide is None else copy.copy(self.guide)
      if hasattr(guide, 'key'):
        guide.key = jax.random.fold_in(guide.key, k)
      policies.append(JSRLPolicy(guide, self.student, self.horizon, self.guide_prob,
                                 seed=int(seed)))
    return policies

  def observe(self, action: np.ndarray, reward: np.ndarray, cost: np.ndarray) -> None:
    self.t += 1
    self.student.observe(action, reward, cost)
    if self._guide_fed:
      self.guide.observe(action, reward, cost)


class FixedCurriculum:
  """h = stages[i] during env steps [i * stage_steps, (i + 1) * stage_steps); last stage after."""

  def __init__(self, stages: Sequence[int], stage_steps: int):
    self.stages = check_stages(stages)
    if stage_steps <= 0:
      raise ValueError(f'stage_steps must be positive, got {stage_steps}')
    self.stage_steps = int(stage_steps)
    self.stage = 0

  @property
  def horizon(self) -> int:
    return self.stages[self.stage]

  def on_step(self, step: int) -> None:
    """Called with the global env step count after each collection step."""
    self.stage = min(step // self.stage_steps, len(self.stages) - 1)

  def on_eval(self, mixed_return: float, mixed_cost: float) -> bool:
    del mixed_return, mixed_cost
    return False

  def apply(self, policy: JSRLPolicy) -> None:
    policy.horizon, policy.guide_prob = self.horizon, None

  def metrics(self) -> Dict[str, float]:
    return {'training/horizon': float(self.horizon)}

  def state_dict(self) -> Dict[str, Any]:
    return {'stage': self.stage}

  def load_state_dict(self, state: Dict[str, Any]) -> None:
    self.stage = int(state['stage'])


class AutoCurriculum:
  """JSRL's automatic curriculum with a cost condition (kappa) for safe RL.

  After each evaluation of the mixed policy at the current horizon, `on_eval` appends its
  return and cost to a moving window of `window` evaluations. The next stage starts when the
  window is full, its mean return is at least `guide_return - tolerance * |guide_return|`,
  and its mean cost is at most `cost_limit`; the window is then emptied, so each stage is
  judged on its own evaluations. `guide_return` is the guide's own evaluation return
  (`set_reference`); until it is set the curriculum does not move.
  """

  def __init__(self, stages: Sequence[int], tolerance: float = 0.05, window: int = 3,
               cost_limit: float = math.inf):
    self.stages = check_stages(stages)
    if not 0.0 <= tolerance <= 1.0:
      raise ValueError(f'tolerance must be in [0, 1], got {tolerance}')
    if window <= 0:
      raise ValueError(f'window must be positive, got {window}')
    self.tolerance, self.window, self.cost_limit = float(tolerance), int(window), cost_limit
    self.stage = 0
    self.guide_return: Optional[float] = None
    self.history = collections.deque(maxlen=self.window)

  @property
  def horizon(self) -> int:
    return self.stages[self.stage]

  def set_reference(self, guide_return: float) -> None:
    self.guide_return = float(guide_return)

  @property
  def target_return(self) -> float:
    if self.guide_return is None:
      return math.inf
    return self.guide_return - self.tolerance * abs(self.guide_return)

  def on_step(self, step: int) -> None:
    del step

  def on_eval(self, mixed_return: float, mixed_cost: float) -> bool:
    """Records one evaluation of the mixed policy; returns whether the stage advanced."""
    self.history.append((float(mixed_return), float(mixed_cost)))
    if self.stage + 1 >= len(self.stages) or len(self.history) < self.window:
      return False
    mean_return, mean_cost = np.mean(np.asarray(self.history), axis=0)
    if mean_return >= self.target_return and mean_cost <= self.cost_limit:
      self.stage += 1
      self.history.clear()
      return True
    return False

  def apply(self, policy: JSRLPolicy) -> None:
    policy.horizon, policy.guide_prob = self.horizon, None

  def metrics(self) -> Dict[str, float]:
    return {'training/horizon': float(self.horizon)}

  def state_dict(self) -> Dict[str, Any]:
    return {'stage': self.stage, 'guide_return': self.guide_return,
            'history': [list(h) for h in self.history]}

  def load_state_dict(self, state: Dict[str, Any]) -> None:
    self.stage = int(state['stage'])
    self.guide_return = state['guide_return']
    self.history = collections.deque((tuple(h) for h in state['history']), maxlen=self.window)


class ProbSchedule:
  """The released GOLD schedule: P(guide acts at global step t) = p0 * exp(-5 t / T), t <= T."""

  def __init__(self, p0: float = 0.9, T: int = 100_000):
    if not 0.0 <= p0 <= 1.0:
      raise ValueError(f'p0 must be a probability, got {p0}')
    if T <= 0:
      raise ValueError(f'T must be positive, got {T}')
    self.p0, self.T = float(p0), int(T)
    self.step = 0

  def prob(self, step: int) -> float:
    if step > self.T:
      return 0.0
    return self.p0 * math.exp(-5.0 * step / self.T)

  @property
  def guide_prob(self) -> float:
    return self.prob(self.step)

  def on_step(self, step: int) -> None:
    self.step = int(step)

  def on_eval(self, mixed_return: float, mixed_cost: float) -> bool:
    del mixed_return, mixed_cost
    return False

  def apply(self, policy: JSRLPolicy) -> None:
    policy.horizon, policy.guide_prob = 0, self.guide_prob

  def metrics(self) -> Dict[str, float]:
    return {'training/guide_prob': self.guide_prob}

  def state_dict(self) -> Dict[str, Any]:
    return {'step': self.step}

  def load_state_dict(self, state: Dict[str, Any]) -> None:
    self.step = int(state['step'])


# -- Configuration --------------------------------------------------------------------------------

SCHEDULES = ('horizon', 'auto', 'prob')


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
  """How the guide's share of each episode shrinks as training goes on."""
  kind: str = 'horizon'  # 'horizon' (fixed stages), 'auto' (JSRL's rule) or 'prob' (per-step
                         # coin flip, the GOLD authors' released code).
  fractions: Tuple[float, ...] = DEFAULT_FRACTIONS  # Horizons H1 > ... > 0 as fractions of the
                                                  # task's episode length T.
  steps: Optional[Tuple[int, ...]] = None  # Horizons in env steps; overrides the fractions.
  stage_steps: int = 40_000  # 'horizon': env steps per stage.
  auto_tolerance: float = 0.05  # 'auto': advance at (1 - tol) of the guide's return.
  auto_window: int = 3  # 'auto': evaluations in the moving average.
  auto_cost_limit: Optional[float] = None  # 'auto': kappa; None: the task's cost threshold.
  prob_p0: float = 0.9  # 'prob': guide probability at step 0.
  prob_T: int = 100_000  # 'prob': env steps after which the guide never acts.

  def __post_init__(self):
    configs.coerce(self)

  def validate(self) -> None:
    if self.kind not in SCHEDULES:
      raise ValueError(f'the guide schedule must be one of {SCHEDULES}, got {self.kind!r}')
    if self.steps is not None:
      check_stages(self.steps)
    horizons_from_fractions(self.fractions, 1)
    for name in ('stage_steps', 'prob_T', 'auto_window'):
      if getattr(self, name) <= 0:
        raise ValueError(f'schedule.{name} must be positive, got {getattr(self, name)}')
    if not 0.0 <= self.prob_p0 <= 1.0:
      raise ValueError(f'schedule.prob_p0 must be a probability, got {self.prob_p0}')

  def horizons(self, episode_len: int) -> tuple:
    """The curriculum's horizons: `steps` if given, else `fractions` × T."""
    if self.steps is not None:
      return check_stages(self.steps)
    return horizons_from_fractions(self.fractions, episode_len)


def make_schedule(config: ScheduleConfig, cost_threshold: float, episode_len: int):
  """The schedule `config` describes, for a task of cost budget kappa and episode length T."""
  config.validate()
  if config.kind == 'horizon':
    return FixedCurriculum(config.horizons(episode_len), config.stage_steps)
  if config.kind == 'auto':
    kappa = cost_threshold if config.auto_cost_limit is None else config.auto_cost_limit
    return AutoCurriculum(config.horizons(episode_len), config.auto_tolerance,
                          config.auto_window, kappa)
  return ProbSchedule(config.prob_p0, config.prob_T)
