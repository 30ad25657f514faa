"""bullet-safety-gym tasks (Car-Circle, Car-Gather) behind `SafeEnv`.

Importing `bullet_safety_gym` registers `Safety{Ball,Car,Drone,Ant}{Reach,Push,Circle,Run,
Gather}-v0` with gymnasium. Steps return the gymnasium 5-tuple with the cost in
`info["cost"]`; observations are float64.

Seeding: the simulator draws its layouts from numpy's process-global random state and ignores
`reset(seed=...)`. Each env here therefore keeps its own `np.random.RandomState` and swaps it
in while the simulator is built and while it resets (where all Circle/Gather randomness lies),
so envs are reproducible and independent of each other and of the caller's global state.
(Reach tasks also redraw the goal during `step` on success; those draws use the global state.)

Success: Gather episodes end once every apple is collected; `info["success"]` marks that.

Streams: bullet-safety-gym hides pybullet's banners (on import and when a simulator is built)
by flushing the C stream named after `sys.stderr.name` / `sys.stdout.name`, which fails when
those have been replaced (pytest capture, notebooks). Both steps therefore run with
`sys.stdout`/`sys.stderr` set back to the process's own streams.
"""

import contextlib
import importlib
import sys

import gymnasium
import numpy as np

from gold_jax.envs.core import (GymnasiumSafeEnv, TaskSpec, finite_xy, sim_seed,
                                with_registered_length)


class _PrivateNumpyRandom:
  """Context manager that runs a block with its own numpy global random state."""

  def __init__(self, seed: int):
    self.reseed(seed)

  def reseed(self, seed: int) -> None:
    self._state = np.random.RandomState(None if seed is None else sim_seed(seed)).get_state()

  @contextlib.contextmanager
  def active(self):
    saved = np.random.get_state()
    np.random.set_state(self._state)
    try:
      yield
    finally:
      self._state = np.random.get_state()
      np.random.set_state(saved)


@contextlib.contextmanager
def _real_std_streams():
  """Points `sys.stdout`/`sys.stderr` at the process's own streams for the block."""
  if sys.__stdout__ is None or sys.__stderr__ is None:
    yield
    return
  with contextlib.redirect_stdout(sys.__stdout__), contextlib.redirect_stderr(sys.__stderr__):
    yield


def import_bullet_safety_gym():
  """Imports (and so registers) bullet-safety-gym; see the module docstring."""
  with _real_std_streams():
    importlib.import_module('bullet_safety_gym.envs.builder')
  return importlib.import_module('bullet_safety_gym')


class BulletEnv(GymnasiumSafeEnv):
  """A bullet-safety-gym env with per-env seeding and Gather success."""

  def __init__(self, spec: TaskSpec, seed: int = 0, **options):
    import_bullet_safety_gym()
    self._random = _PrivateNumpyRandom(seed)
    with self._random.active(), _real_std_streams():
      env = gymnasium.make(spec.sim_id, **options)
    super().__init__(env, with_registered_length(spec, env), seed, cost_key='cost')

  def _reset(self, seed):
    if seed is not None:
      self._random.reseed(seed)
    # The simulator restores a saved state on reset, but the motor targets set by the last
    # action survive it and act during the reset's own physics step: zero them first, so a
    # reset gives the same start as in a fresh env.
    agent = self.env.unwrapped.agent
    agent.apply_action(np.zeros(agent.act_dim, np.float32))
    with self._random.active():
      return self.env.reset()

  def agent_position(self):
    return finite_xy(lambda: self.env.unwrapped.agent.get_position())

  def render_frame(self):
    return np.asarray(self.env.unwrapped.render(mode='rgb_array'))

  def geometry(self):
    """Circle tasks: the circle's `radius` and the boundaries `x_lim`."""
    task = getattr(self.env.unwrapped, 'task', None)
    out = {}
    radius = getattr(getattr(task, 'circle', None), 'radius', None)
    if radius is not None:
      out['radius'] = float(radius)
    if getattr(task, 'x_lim', None) is not None:
      out['x_lim'] = float(task.x_lim)
    return out

  def _step(self, action):
    obs, reward, cost, terminated, truncated, info = super()._step(action)
    if self.spec.has_success:
      info = dict(info, success=bool(terminated and self.env.unwrapped.task.goal_achieved))
    return obs, reward, cost, terminated, truncated, info
