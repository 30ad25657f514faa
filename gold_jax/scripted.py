"""A scripted expert for safety-gymnasium's Point-Goal: steers by lidar, around the hazards.

Why: at the budgets a 2-core machine affords (up to 150k env steps), no SAC-Lagrangian variant
gave a Point-Goal expert that is both safe and good (`docs/results/experts/variants/`): it
learns to reach goals only while the cost is ignored, and stands still once λ acts. GOLD needs
safe demonstrations, not a particular way of getting them, so this controller supplies them.
It reads only the observation vector the learners see, and it is deterministic: the seeds of a
sweep differ in the layouts they demonstrate, not in the expert.

How it acts, every step:

1. **Lidar decoding.** safety-gymnasium's pseudo-lidar has 16 bins around the robot (bin i
   covers angles [i, i+1)·22.5°, counter-clockwise from straight ahead); a bin reads
   (3 m − distance) / 3 m of the nearest object in it, and leaks `alias` times that into the
   next bin, where `alias` is the object's position inside its bin. The goal's lidar thus
   gives its exact angle and distance. Every lit bin of the hazard and vase lidars gives one
   obstacle point (hazards: radius 0.2 m).
2. **Heading.** Among 72 candidate headings, the one closest to the goal whose straight segment
   (up to `look` m, ending `reach_goal` short of the goal) keeps `margin` from every obstacle;
   if none points within 90° of the goal, those keeping `tight`; if no heading keeps that, the
   one of greatest clearance.
3. **Speed.** Point's forward motor saturates at |ctrl| ≥ 0.05 (its force range), so a
   proportional command would be bang-bang. Speed is held instead by feedback on the
   velocimeter: target `top_speed`·cos²(heading error), command `kv`·(target − speed).
4. **Turn.** `kt`·heading error.

The gains were chosen on episodes of the training range of reset seeds (1000–1009), never on the
evaluation or demonstration episodes of `gold_jax.protocol`.

    act = scripted.policy('Point-Goal')   # act(obs (n, 60)) -> actions (n, 2)
"""

import dataclasses
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from gold_jax import errors

TASKS = ('Point-Goal',)  # Tasks with a scripted expert (checked to be safe and to reach goals).

BINS = 16  # safety-gymnasium's lidar bins (LidarConf.num_bins).
BIN = 2 * np.pi / BINS
LIDAR_RANGE = 3.0  # LidarConf.max_dist: a bin reads (3 - d) / 3.
HEADINGS = np.linspace(-np.pi, np.pi, 72, endpoint=False)
# Obstacle lidars and the radius of their objects (m): hazards cost, vases block.
OBSTACLES = (('hazards_lidar', 0.2), ('vases_lidar', 0.1))


@dataclasses.dataclass(frozen=True)
class Gains:
  margin: float = 0.2  # Clearance (m) a heading keeps from every obstacle's edge.
  tight: float = 0.1  # The smaller clearance accepted when no heading keeps `margin`.
  look: float = 1.0  # Length (m) of the segment checked along a heading.
  reach_goal: float = 0.25  # The segment stops this short of the goal (its radius is 0.3 m).
  top_speed: float = 0.7  # Target forward speed (m/s) when heading straight at the target.
  kv: float = 2.0  # Forward command per m/s of speed error.
  kt: float = 4.0  # Turn command per radian of heading error.


def layout(env) -> Dict[str, slice]:
  """Slices of the flat observation of a safety-gymnasium env (`gold_jax.envs.make`) by
  sensor name: {'velocimeter': slice(3, 6), 'goal_lidar': slice(12, 28), ...}."""
  inner = getattr(env, 'env', None)
  task = getattr(getattr(inner, 'unwrapped', None), 'task', None)
  if task is None:
    raise errors.TaskError(f'{env.spec.name}: not a safety-gymnasium env; the scripted expert '
                           'reads safety-gymnasium lidar observations')
  out, start = {}, 0
  for name, space in task.obs_info.obs_space_dict.spaces.items():
    size = int(np.prod(space.shape))
    out[name] = slice(start, start + size)
    start += size
  return out


def locate(lidar: np.ndarray) -> Optional[Tuple[float, float]]:
  """(angle in [0, 2π), distance) of the single object a lidar sees; None if it sees nothing.

  Exact for one object: the brightest bin b holds it, and the next bin reads `alias` times as
  much, where alias = (angle − b·BIN) / BIN."""
  b = int(np.argmax(lidar))
  if lidar[b] <= 0:
    return None
  alias = min(lidar[(b + 1) % BINS] / lidar[b], 1.0)
  return (b + alias) * BIN, LIDAR_RANGE * (1.0 - lidar[b])


def obstacle_points(lidar: np.ndarray, radius: float) -> Tuple[np.ndarray, np.ndarray]:
  """One point (x ahead, y left; m) per lit bin, and its object radius."""
  lit = np.nonzero(lidar > 0)[0]
  ratio = lidar[(lit + 1) % BINS] / np.maximum(lidar[lit], 1e-9)
  angle = (lit + np.where(ratio < 1.0, ratio, 0.5)) * BIN  # Aliased: exact; else mid-bin.
  distance = LIDAR_RANGE * (1.0 - lidar[lit])
  points = np.stack([distance * np.cos(angle), distance * np.sin(angle)], axis=1)
  return points, np.full(len(lit), radius)


def clearance(points: np.ndarray, radii: np.ndarray, headings: np.ndarray,
              length: float) -> np.ndarray:
  """For each heading, the least distance from the segment [0, length] along it to an
  obstacle's edge (m); 9 where there are no obstacles."""
  if len(points) == 0:
    return np.full(headings.shape, 9.0)
  unit = np.stack([np.cos(headings), np.sin(headings)], axis=1)  # (H, 2)
  along = np.clip(unit @ points.T, 0.0, length)  # (H, N): the nearest point of each segment.
  dx = points[None, :, 0] - along * unit[:, :1]
  dy = points[None, :, 1] - along * unit[:, 1:]
  return (np.sqrt(dx * dx + dy * dy) - radii[None]).min(axis=1)


class GoalController:
  """Point robot to the goal around hazards; `__call__(obs (n, d)) -> actions (n, 2)`."""

  def __init__(self, sensors: Dict[str, slice], gains: Gains = Gains()):
    missing = {'velocimeter', 'goal_lidar', 'hazards_lidar'} - set(sensors)
    if missing:
      raise errors.TaskError(f'the scripted Point-Goal expert needs the sensors {sorted(missing)}'
                             ', which this env does not observe')
    self.sensors = sensors
    self.gains = gains

  def __call__(self, obs: np.ndarray) -> np.ndarray:
    return np.stack([self.act(o) for o in np.atleast_2d(obs)]).astype(np.float32)

  def act(self, obs: np.ndarray) -> np.ndarray:
    g = self.gains
    goal = locate(obs[self.sensors['goal_lidar']])
    goal_angle, goal_distance = goal if goal is not None else (0.0, g.look)
    parts = [obstacle_points(obs[self.sensors[name]], radius)
             for name, radius in OBSTACLES if name in self.sensors]
    points = np.concatenate([p for p, _ in parts])
    radii = np.concatenate([r for _, r in parts])
    clear = clearance(points, radii, HEADINGS,
                      max(min(goal_distance - g.reach_goal, g.look), 0.05))
    towards = np.cos(HEADINGS - goal_angle)
    ok = clear > g.margin
    if not (ok & (towards > 0)).any():
      ok = clear > g.tight
    heading = HEADINGS[np.argmax(np.where(ok, towards, clear - 10.0))]
    error = float(np.angle(np.exp(1j * heading)))
    speed = float(obs[self.sensors['velocimeter']][0])
    target = g.top_speed * max(np.cos(error), 0.0) ** 2
    forward = np.clip(g.kv * (target - speed), -1.0, 1.0)
    return np.array([forward, np.clip(g.kt * error, -1.0, 1.0)])


def policy(task: str, gains: Gains = Gains()) -> Callable[[np.ndarray], np.ndarray]:
  """The scripted expert of `task` (one of `TASKS`): act(obs (n, obs_dim)) -> (n, act_dim)."""
  from gold_jax import envs  # pylint: disable=import-outside-toplevel
  name = envs.get_spec(task).name
  if name not in TASKS:
    raise errors.TaskError(f'no scripted expert for {name}; scripted experts exist for '
                           f'{", ".join(TASKS)}',
                           hint='train one with SAC-Lagrangian instead (--expert=sac)')
  env = envs.make(name)
  try:
    return GoalController(layout(env), gains)
  finally:
    env.close()
