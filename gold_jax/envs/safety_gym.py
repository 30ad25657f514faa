"""safety-gymnasium tasks (Point/Car x Goal/Button/Push) behind `SafeEnv`.

`safety_gymnasium.make(id)` already steps with the 6-tuple
`(obs, reward, cost, terminated, truncated, info)`; its cost is the sum of the task's
constraint costs (`info["cost_sum"]`, with the parts in `info["cost_hazards"]`, ...), its
observations are float64 and it reseeds the layout on `reset(seed=...)`.
The compat layer (`safety_gym_compat`) is applied before the package is imported.

Fast resets: safety-gymnasium recompiles its MuJoCo world on every reset, and most of that time
(about 0.5 s of 0.55 s) goes to decoding the six large PNG images of the starry skybox, which
only rendering shows. Envs made without a `render_mode` compile their worlds without the
skybox; physics and observations are unchanged.
"""

import contextlib
import contextvars
import importlib
import re

import numpy as np

from gold_jax.envs import safety_gym_compat
from gold_jax.envs.core import SafeEnv, TaskSpec, finite_xy, with_registered_length

_SKYBOX = re.compile(r'<texture\b[^>]*\btype="skybox"[^>]*?(/>|>\s*</texture>)')
_skip_skybox = contextvars.ContextVar('gold_jax_skip_skybox', default=False)


class _ModelCompiler:
  """Stands in for `mujoco.MjModel` inside `safety_gymnasium.world`: drops the skybox from
  the XML while `_skip_skybox` is set; everything else goes to the real class."""

  def __init__(self, model_cls):
    self._model_cls = model_cls

  def from_xml_string(self, xml, *args, **kwargs):
    if _skip_skybox.get():
      xml = _SKYBOX.sub('', xml)
    return self._model_cls.from_xml_string(xml, *args, **kwargs)

  def __getattr__(self, name):
    return getattr(self._model_cls, name)


class _MujocoForWorld:
  """The `mujoco` module as `safety_gymnasium.world` sees it, with `MjModel` wrapped."""

  def __init__(self, mujoco):
    self._mujoco = mujoco
    self.MjModel = _ModelCompiler(mujoco.MjModel)  # pylint: disable=invalid-name

  def __getattr__(self, name):
    return getattr(self._mujoco, name)


def import_safety_gymnasium():
  """Returns the `safety_gymnasium` module, imported with the compat fixes in place."""
  safety_gym_compat.apply()
  world = importlib.import_module('safety_gymnasium.world')
  if not isinstance(world.mujoco, _MujocoForWorld):
    world.mujoco = _MujocoForWorld(world.mujoco)
  return importlib.import_module('safety_gymnasium')


@contextlib.contextmanager
def _worlds_without_skybox(enabled: bool):
  token = _skip_skybox.set(enabled)
  try:
    yield
  finally:
    _skip_skybox.reset(token)


# safety-gymnasium object groups of `SafetyGymEnv.scene`: (task attribute, label).
SCENE_GROUPS = (('hazards', 'hazard'), ('vases', 'vase'), ('pillars', 'pillar'),
                ('gremlins', 'gremlin'), ('buttons', 'button'))


class SafetyGymEnv(SafeEnv):
  """A safety-gymnasium env. Goals met on the way are reported in `info["goal_met"]`."""

  def __init__(self, spec: TaskSpec, seed: int = 0, **options):
    safety_gymnasium = import_safety_gymnasium()
    self._fast = options.get('render_mode') is None
    with _worlds_without_skybox(self._fast):
      self.env = safety_gymnasium.make(spec.sim_id, **options)
    spec = with_registered_length(spec, self.env)
    super().__init__(spec, self.env.observation_space, self.env.action_space, seed)

  def _reset(self, seed):
    with _worlds_without_skybox(self._fast):
      return self.env.reset(seed=seed)

  def _step(self, action):
    return self.env.step(action)

  def close(self):
    self.env.close()

  def agent_position(self):
    return finite_xy(lambda: self.env.unwrapped.task.agent.pos)

  def render_frame(self):
    """Needs the env made with `render_mode='rgb_array'`."""
    if self._fast:
      raise RuntimeError("make the env with render_mode='rgb_array' to render frames")
    return np.asarray(self.env.render())

  def scene(self):
    """Hazards, vases, pillars, gremlins and buttons as (x, y, radius), and the `goal`;
    safety-gymnasium draws a new layout at every reset (and moves goals once reached)."""
    task = self.env.unwrapped.task
    out = {}
    for attribute, label in SCENE_GROUPS:
      group = getattr(task, attribute, None)
      positions = getattr(group, 'pos', None) if getattr(group, 'num', 0) else None
      if positions is not None:
        size = float(np.max(np.atleast_1d(getattr(group, 'size', 0.1))))
        out[label] = [(float(p[0]), float(p[1]), size) for p in np.atleast_2d(positions)]
    goal = getattr(task, 'goal', None)
    if goal is not None and getattr(goal, 'pos', None) is not None:
      out['goal'] = (float(goal.pos[0]), float(goal.pos[1]), float(goal.size))
    return out
