"""The environment interface every gold-jax loop talks to: `SafeEnv`.

`SafeEnv` turns one simulator instance into the safe-RL interface of `docs/api.md`:

* `reset(seed=None) -> (obs, info)`;
  `step(action) -> (obs, reward, cost, terminated, truncated, info)`;
* observations are float32 `(obs_dim,)`; `reward` and `cost` are Python floats, `cost >= 0`;
* actions are `(act_dim,)` in [-1, 1]: finite values outside are clipped, a wrong shape or a
  NaN/inf raises `ValueError`; the action is rescaled affinely when the simulator's box differs;
* episodes are truncated after `spec.max_episode_steps` steps (simulators usually do the same);
* `info["success"]` (bool) is present on every step of tasks with `spec.has_success`.

Simulator families subclass `SafeEnv` and implement `_reset(seed)` and `_step(sim_action)`.
"""

import dataclasses
from typing import Any, Dict, Optional, Tuple

import gymnasium
import numpy as np


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """One task of the registry."""
  name: str  # task name, e.g. 'Car-Circle'
  sim_id: str  # simulator id, e.g. 'SafetyCarCircle-v0'
  simulator: str  # family: 'safety_gymnasium', 'bullet_safety_gym' or 'metadrive'
  max_episode_steps: Optional[int]  # episode length (None: the simulator's own); truncation
  cost_threshold: float  # episode cost budget kappa used for reporting
  has_success: bool  # whether `info["success"]` is defined


def with_registered_length(spec: TaskSpec, env: gymnasium.Env) -> TaskSpec:
  """Fills a missing `spec.max_episode_steps` from the simulator's own time limit."""
  if spec.max_episode_steps is not None:
    return spec
  steps = env.spec.max_episode_steps if env.spec is not None else None
  if steps is None:
    raise ValueError(f'{spec.name}: the simulator registers no episode length; '
                     'pass max_episode_steps=...')
  return dataclasses.replace(spec, max_episode_steps=int(steps))


def validate_action(action: Any, act_dim: int) -> np.ndarray:
  """Checks one action and returns it as float32 clipped to [-1, 1].

  Raises:
    ValueError: the action is not numeric, does not have shape `(act_dim,)`, or holds NaN/inf.
  """
  try:
    array = np.asarray(action)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'action: cannot convert {type(action).__name__} to an array') from e
  if array.dtype.kind not in 'biuf':
    raise ValueError(f'action: expected a numeric array, got dtype {array.dtype}')
  if array.shape != (act_dim,):
    raise ValueError(f'action: expected shape ({act_dim},), got {array.shape}')
  if not np.all(np.isfinite(array)):
    raise ValueError(f'action: contains NaN or inf: {array}')
  return np.clip(array.astype(np.float32), -1.0, 1.0)


def sim_seed(seed) -> int:
  """Seeds must be non-negative integers; the simulators take them modulo 2**32."""
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f'seed must be a non-negative integer, got {seed!r}')
  return int(seed) % 2**32


def _float32_box(space: gymnasium.spaces.Box) -> gymnasium.spaces.Box:
  return gymnasium.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32),
                              dtype=np.float32)


def finite_xy(getter) -> Optional[np.ndarray]:
  """The first two entries of `getter()` as float64, or None if unreadable or not finite."""
  try:
    position = np.asarray(getter(), np.float64)
  except Exception:  # pylint: disable=broad-except  # Simulators differ in what they expose.
    return None
  if position.ndim == 1 and position.size >= 2 and np.all(np.isfinite(position[:2])):
    return position[:2].copy()
  return None


class SafeEnv:
  """Base class: validation, rescaling, dtypes, episode limit and seeding for one simulator.

  Attributes:
    spec: the `TaskSpec`.
    obs_dim, act_dim: flat observation and action sizes.
    observation_space: float32 `Box` of shape `(obs_dim,)`.
    action_space: float32 `Box(-1, 1, (act_dim,))`, seeded with the env's seed.
  """

  def __init__(self, spec: TaskSpec, sim_observation_space, sim_action_space, seed: int = 0):
    for role, space in (('observation', sim_observation_space), ('action', sim_action_space)):
      if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f'{spec.name}: needs a flat Box {role} space, got {space}')
    if not (np.all(np.isfinite(sim_action_space.low)) and
            np.all(np.isfinite(sim_action_space.high))):
      raise ValueError(f'{spec.name}: action space must be bounded, got {sim_action_space}')
    self.spec = spec
    self.obs_dim = int(sim_observation_space.shape[0])
    self.act_dim = int(sim_action_space.shape[0])
    self.observation_space = _float32_box(sim_observation_space)
    self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (self.act_dim,), np.float32, seed=seed)
    self._low = sim_action_space.low.astype(np.float64)
    self._high = sim_action_space.high.astype(np.float64)
    self._rescale = not (np.all(self._low == -1.0) and np.all(self._high == 1.0))
    self._sim_action_dtype = sim_action_space.dtype
    self._next_seed = seed
    self._steps = 0
    self._needs_reset = True

  # Hooks for each simulator family.
  def _reset(self, seed: Optional[int]) -> Tuple[Any, Dict]:
    raise NotImplementedError

  def _step(self, action: np.ndarray) -> Tuple[Any, float, float, bool, bool, Dict]:
    raise NotImplementedError

  def close(self) -> None:
    """Releases the simulator."""

  # What figures read of the simulator (trajectory plots, driving plots), so that no caller
  # reaches into a simulator; each family overrides what it has.
  def agent_position(self) -> Optional[np.ndarray]:
    """The agent's (x, y), or None where the simulator does not expose it."""
    return None

  def scene(self) -> Dict[str, Any]:
    """The episode's layout: `{label: [(x, y, radius), ...]}` of obstacles and `goal`
    (x, y, radius) where the task has them; {} otherwise."""
    return {}

  def geometry(self) -> Dict[str, float]:
    """Fixed shapes of the task drawn on plots (e.g. a circle's `radius`, `x_lim`)."""
    return {}

  def render_frame(self) -> np.ndarray:
    """An RGB frame `(H, W, 3)` rendered off-screen; RuntimeError where the family cannot."""
    raise RuntimeError(f'off-screen rendering of {self.spec.simulator} tasks is not supported')

  # The public interface.
  def reset(self, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None
            ) -> Tuple[np.ndarray, Dict]:
    """Starts an episode. The first reset uses the seed given to `make` unless one is given.

    Seeds are non-negative integers, taken modulo 2**32. `options` go to the simulator's
    `reset` where the family supports them (e.g. MetaDrive's `{"scenario_index": i}`).
    """
    if seed is None:
      seed, self._next_seed = self._next_seed, None
    if seed is not None:
      seed = sim_seed(seed)
      self.action_space.seed(seed)
    obs, info = self._reset(seed) if options is None else self._reset(seed, options=options)
    self._steps = 0
    self._needs_reset = False
    info = dict(info)
    if self.spec.has_success:
      info['success'] = False
    return np.asarray(obs, dtype=np.float32), info

  def step(self, action) -> Tuple[np.ndarray, float, float, bool, bool, Dict]:
    """Advances one step; see the module docstring for the conventions."""
    action = validate_action(action, self.act_dim)
    if self._needs_reset:
      raise RuntimeError(f'{self.spec.name}: call reset() before step() (and after an episode ends)')
    obs, reward, cost, terminated, truncated, info = self._step(self._to_sim(action))
    self._steps += 1
    terminated = bool(terminated)
    truncated = bool(truncated) or self._steps >= self.spec.max_episode_steps
    self._needs_reset = terminated or truncated
    info = dict(info)
    if self.spec.has_success:
      info['success'] = bool(info.get('success', False))
    cost = float(cost)
    if not cost >= 0.0:
      raise ValueError(f'{self.spec.name}: simulator returned cost {cost}; costs must be >= 0')
    return np.asarray(obs, dtype=np.float32), float(reward), cost, terminated, truncated, info

  def _to_sim(self, action: np.ndarray) -> np.ndarray:
    """Maps an action in [-1, 1] to the simulator's box and dtype."""
    if self._rescale:
      action = self._low + (action.astype(np.float64) + 1.0) * 0.5 * (self._high - self._low)
    return action.astype(self._sim_action_dtype)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def __repr__(self):
    return f'{type(self).__name__}({self.spec.name!r}, obs_dim={self.obs_dim}, act_dim={self.act_dim})'


class GymnasiumSafeEnv(SafeEnv):
  """`SafeEnv` over a gymnasium env whose `step` returns 5 values and puts the cost in `info`.

  Args:
    env: the gymnasium env (bullet-safety-gym, MetaDrive).
    spec: the task.
    seed: seed of the first reset.
    cost_key: info key of the per-step cost.
    success_key: info key whose truthiness is `info["success"]` (tasks with success only).
    forward_seed: whether `reset(seed)` passes the seed on to the simulator's `reset`.
  """

  def __init__(self, env: gymnasium.Env, spec: TaskSpec, seed: int = 0, cost_key: str = 'cost',
               success_key: Optional[str] = None, forward_seed: bool = True):
    super().__init__(spec, env.observation_space, env.action_space, seed)
    self.env = env
    self._cost_key = cost_key
    self._success_key = success_key
    self._forward_seed = forward_seed

  def _reset(self, seed, options=None):
    return self.env.reset(seed=seed if self._forward_seed else None, options=options)

  def agent_position(self) -> Optional[np.ndarray]:
    """(x, y) of `unwrapped.agent.position` (MetaDrive's vehicle), or None."""
    return finite_xy(lambda: self.env.unwrapped.agent.position)

  def _step(self, action):
    obs, reward, terminated, truncated, info = self.env.step(action)
    cost = info.get(self._cost_key, 0.0)
    if self._success_key is not None:
      info = dict(info, success=bool(info.get(self._success_key, False)))
    return obs, reward, cost, terminated, truncated, info

  def close(self):
    self.env.close()
