"""Scripted experts for safety-gymnasium's Goal, Button and Push tasks: steer by lidar, around
the obstacles (Push: `gold_jax.scripted_push`).

Why: at the budgets a 2-core machine affords (up to 150k env steps), no SAC-Lagrangian variant
gave a Point-Goal expert that is both safe and good (`docs/results/experts/variants/`): it
learns to reach goals only while the cost is ignored, and stands still once λ acts. GOLD needs
safe demonstrations, not a particular way of getting them, so this controller supplies them
where it is safe (`SAFE_TASKS`). It reads only the observation vector the learners see, and it
is deterministic: the seeds of a sweep differ in the layouts they demonstrate, not in the expert.

How it acts, every step:

1. **Lidar decoding.** safety-gymnasium's pseudo-lidar has 16 bins around the robot (bin i
   covers angles [i, i+1)·22.5°, counter-clockwise from the body's x axis); a bin reads
   (3 m − distance) / 3 m of the nearest object in it, and leaks `alias` times that into the
   next bin (1 − `alias` times into the previous one), where `alias` is the object's position
   inside its bin. The goal's lidar (in Button
   tasks: the button to press) thus gives its exact angle and distance. Every lit bin of the
   other lidars (hazards, vases, gremlins, buttons other than the goal) gives one obstacle point.
   A gremlin's radius is grown by `gremlin_reach`, since it moves. When the goal is out of
   lidar range, a Button task heads for the buttons' centroid (the goal is one of them).
2. **Heading.** Among 72 candidate headings, the one closest to the goal whose straight segment
   (up to `look` m, ending `reach_goal` short of the goal) keeps `margin` from every obstacle;
   if none points within 90° of the goal, those keeping `tight`; if no heading keeps that, the
   one of greatest clearance.
3. **Speed.** Target `top_speed`·cos²(heading error) along the driving direction, command
   `kv`·(target − speed measured by the velocimeter).
4. **Turn.** `kt`·heading error; `Robot.actuate` maps (speed, turn) commands to Point's
   (thrust, turn rate) or Car's two wheels.
5. **After a press** (Button tasks), while the env resamples the buttons: back off at
   `back_off`, since the pressed button is a wrong one once the buttons are live again.

The gains were chosen on Point-Goal episodes (the Button-only ones on Point-Button episodes) of
the training range of reset seeds (1000–1009), never on the evaluation or demonstration episodes
of `gold_jax.protocol`, and are the same for every task and robot but Car-Button, which has its
own (`TASK_GAINS`, chosen on Car-Button episodes of the same range).

    act = scripted.policy('Point-Goal')   # act(obs (n, 60)) -> actions (n, 2)
"""
import collections
import dataclasses
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from gold_jax import errors

# Tasks the controller plays: it drives to `goal_lidar`'s object (the goal, or the button to
# press) around every obstacle the env's lidars show; on Push, `gold_jax.scripted_push` pushes
# the box there.
TASKS = ('Point-Goal', 'Car-Goal', 'Point-Button', 'Car-Button', 'Point-Push', 'Car-Push')
# Of those, where it is safe (mean cost <= kappa) and reaches goals, on the evaluation episodes
# of the laptop sweep (every seed; cost 0 on the Push tasks).
SAFE_TASKS = ('Point-Goal', 'Car-Goal', 'Point-Push', 'Car-Push')
# Where the `laptop` preset plays it (`gold_jax.presets`): SAFE_TASKS, and the Button tasks,
# where it is not safe and is played for lack of a safe expert. Point-Button: 7.4 reward at cost
# 30.6 on the laptop sweep's evaluation episodes (kappa 25; 12.2 and 20.3 on training-range
# seeds 1000-1009 and 1010-1019).
# Car-Button, with its own gains (`TASK_GAINS`): 4.3 at cost 35.2 on training-range episodes;
# the gremlins, which circle through its path, and wrong buttons touched while it pivots.
PRESET_TASKS = SAFE_TASKS + ('Point-Button', 'Car-Button')

BINS = 16  # safety-gymnasium's lidar bins (LidarConf.num_bins).
BIN = 2 * np.pi / BINS
LIDAR_RANGE = 3.0  # LidarConf.max_dist: a bin reads (3 - d) / 3.
HEADINGS = np.linspace(-np.pi, np.pi, 72, endpoint=False)
# Obstacle lidars and the radius of their objects (m): hazards and gremlins cost, vases block,
# and a button other than the goal costs when pressed.
OBSTACLES = (('hazards_lidar', 0.2), ('vases_lidar', 0.1), ('gremlins_lidar', 0.1),
             ('buttons_lidar', 0.1))
GREMLIN_TRAVEL = 0.35  # Radius (m) of the circle a Button-1 gremlin runs round, at 1 rad/s.


@dataclasses.dataclass(frozen=True)
class Robot:
  """How a robot's body and actuators map to (forward, turn) commands in [-1, 1]."""
  forward: float  # Driving direction, as an angle in the lidar's frame (rad).
  wheels: bool  # Differential drive (left, right) instead of (thrust, turn rate).

  def actuate(self, forward: float, turn: float) -> np.ndarray:
    """`turn` > 0 turns counter-clockwise (towards the lidar's positive angles)."""
    if self.wheels:
      both = np.array([forward + turn, forward - turn])
      return np.clip(both, -1.0, 1.0)
    return np.array([forward, turn])


# Point drives along its x axis, Car along its -y axis; Car's left wheel faster turns it
# counter-clockwise. Both saturate early (Point's thrust at |ctrl| 0.05, Car's wheels at 0.02:
# their force ranges), so the speed loop acts on them as a bang-bang controller with a small
# dead band. (Scaling the commands to those ranges was tried on the tuning episodes: it changed
# little on Car-Goal, and made Point slower and safer.)
ROBOTS = {'Point': Robot(forward=0.0, wheels=False),
          'Car': Robot(forward=-np.pi / 2, wheels=True)}


@dataclasses.dataclass(frozen=True)
class Gains:
  margin: float = 0.2  # Clearance (m) a heading keeps from every obstacle's edge.
  tight: float = 0.1  # The smaller clearance accepted when no heading keeps `margin`.
  look: float = 1.0  # Length (m) of the segment checked along a heading.
  reach_goal: float = 0.25  # The segment stops this short of the goal (its radius is 0.3 m).
  top_speed: float = 0.7  # Target forward speed (m/s) when heading straight at the target.
  kv: float = 2.0  # Forward command per m/s of speed error.
  kt: float = 4.0  # Turn command per radian of heading error.
  # Added to a gremlin's radius: it moves, so keep clear of where it may be within about a
  # second (its travel), not only of where it is.
  gremlin_reach: float = GREMLIN_TRAVEL
  # Forward command (backwards) while the buttons are resampled after a press: the pressed button
  # is then one of the wrong ones, and touching it costs once the buttons are live again.
  back_off: float = 1.0
  # When the goal button is out of lidar range, head for the buttons' centroid (else drive on).
  seek_buttons: bool = True
  # Nearer than this (m) to an obstacle's edge, drive straight away from it along the body
  # instead of steering (0: never). Tried on Car-Button (docs/results/experts/scripted.md).
  escape: float = 0.0


# Gains of the tasks where the shared ones do worst, chosen on training-range episodes
# (docs/results/experts/scripted.md). Car-Button: wider margins and a faster turn cut the cost
# from 86.8 to 31.2 on reset seeds 1000-1004.
TASK_GAINS = {'Car-Button': Gains(margin=0.3, gremlin_reach=0.5, kt=8.0)}


def gains_of(task: str) -> Gains:
  """The gains `policy` plays `task` with by default."""
  return TASK_GAINS.get(task, Gains())


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


def wrap(angle: float) -> float:
  """`angle` in (-π, π]."""
  return float(np.angle(np.exp(1j * angle)))


def drive(robot: Robot, velocimeter: np.ndarray, heading: float, top_speed: float, kv: float,
          kt: float, reverse: bool = False) -> np.ndarray:
  """The action that drives `robot` along `heading` (rad, lidar frame): forward speed
  `top_speed`·cos²(heading error) held by feedback (`kv` per m/s) on the velocimeter, turn
  `kt`·heading error. `reverse`: back up instead where the heading lies behind."""
  error = wrap(heading - robot.forward)
  speed = float(velocimeter[:2] @ np.array([np.cos(robot.forward), np.sin(robot.forward)]))
  sign = 1.0
  if reverse and np.cos(error) < -0.2:
    error, sign = wrap(error - np.pi), -1.0
  target = sign * top_speed * max(np.cos(error), 0.0) ** 2
  forward = np.clip(kv * (target - speed), -1.0, 1.0)
  return robot.actuate(forward, np.clip(kt * error, -1.0, 1.0))


class GoalController:
  """Drives `robot` to the goal around the obstacles; `__call__(obs (n, d)) -> actions (n, 2)`."""

  def __init__(self, sensors: Dict[str, slice], robot: Robot, gains: Gains = Gains()):
    missing = {'velocimeter', 'goal_lidar', 'hazards_lidar'} - set(sensors)
    if missing:
      raise errors.TaskError(f'the scripted expert needs the sensors {sorted(missing)}, which '
                             'this env does not observe')
    self.sensors = sensors
    self.robot = robot
    self.gains = gains

  def __call__(self, obs: np.ndarray) -> np.ndarray:
    return np.stack([self.act(o) for o in np.atleast_2d(obs)]).astype(np.float32)

  def obstacles(self, obs: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Obstacle points and radii; the goal button is left out of the buttons."""
    points, radii = [np.zeros((0, 2))], [np.zeros(0)]
    for name, radius in OBSTACLES:
      if name not in self.sensors:
        continue
      lidar = obs[self.sensors[name]]
      if name == 'buttons_lidar':  # Bins where the goal button is the nearest button.
        goal_lidar = obs[self.sensors['goal_lidar']]
        lidar = np.where((goal_lidar > 0) & np.isclose(lidar, goal_lidar), 0.0, lidar)
      if name == 'gremlins_lidar':
        radius += self.gains.gremlin_reach
      p, r = obstacle_points(lidar, radius)
      points.append(p)
      radii.append(r)
    return np.concatenate(points), np.concatenate(radii)

  def resampling(self, obs: np.ndarray) -> bool:
    """Whether the buttons are being resampled after a press (Button tasks): the env then
    blanks the buttons lidar for 10 steps; otherwise it shows the goal button whenever the goal
    lidar does."""
    return ('buttons_lidar' in self.sensors and not obs[self.sensors['buttons_lidar']].any()
            and obs[self.sensors['goal_lidar']].any())

  def act(self, obs: np.ndarray) -> np.ndarray:
    g, robot = self.gains, self.robot
    if g.back_off and self.resampling(obs):
      return robot.actuate(-g.back_off, 0.0)
    goal = locate(obs[self.sensors['goal_lidar']])
    points, radii = self.obstacles(obs)
    if g.escape and len(points):
      edge = np.hypot(points[:, 0], points[:, 1]) - radii
      if edge.min() < g.escape:  # Too close to turn: straight away from it, along the body.
        ahead = points[np.argmin(edge)] @ np.array([np.cos(robot.forward), np.sin(robot.forward)])
        return robot.actuate(-1.0 if ahead > 0 else 1.0, 0.0)
    if goal is not None:
      goal_angle, goal_distance = goal
    elif g.seek_buttons and 'buttons_lidar' in self.sensors:  # Out of range: one of the buttons.
      buttons, _ = obstacle_points(obs[self.sensors['buttons_lidar']], 0.0)
      if not len(buttons):  # No button in range: turn on the spot until one is.
        return robot.actuate(0.0, 1.0)
      centre = buttons.mean(axis=0)
      goal_angle, goal_distance = float(np.arctan2(centre[1], centre[0])), g.look
    else:  # Out of lidar range: drive on.
      goal_angle, goal_distance = robot.forward, g.look
    clear = clearance(points, radii, HEADINGS,
                      max(min(goal_distance - g.reach_goal, g.look), 0.05))
    towards = np.cos(HEADINGS - goal_angle)
    ok = clear > g.margin
    if not (ok & (towards > 0)).any():
      ok = clear > g.tight
    heading = HEADINGS[np.argmax(np.where(ok, towards, clear - 10.0))]
    return drive(robot, obs[self.sensors['velocimeter']], heading, g.top_speed, g.kv, g.kt)


def check_task(task: str) -> str:
  """The task name of `task`; a TaskError if it has no scripted expert."""
  from gold_jax import envs  # pylint: disable=import-outside-toplevel
  name = envs.get_spec(task).name
  if name not in TASKS:
    raise errors.TaskError(f'no scripted expert for {name}; scripted experts exist for '
                           f'{", ".join(TASKS)}',
                           hint='train one with SAC-Lagrangian instead (--expert=sac)')
  return name


def policy(task: str, gains: Optional[Gains] = None) -> Callable[[np.ndarray], np.ndarray]:
  """The scripted expert of `task` (one of `TASKS`): act(obs (n, obs_dim)) -> (n, act_dim).
  `gains`: `gains_of(task)` if None. It is checked to be safe only on `SAFE_TASKS`."""
  from gold_jax import envs  # pylint: disable=import-outside-toplevel
  name = check_task(task)
  env = envs.make(name)
  robot = name.split('-')[0]
  try:
    if name.endswith('-Push'):
      from gold_jax import scripted_push  # pylint: disable=import-outside-toplevel
      return scripted_push.PushController(layout(env), robot)
    return GoalController(layout(env), ROBOTS[robot],
                          gains_of(name) if gains is None else gains)
  finally:
    env.close()


def episodes(task: str, num_episodes: int, first_seed: int, gains: Optional[Gains] = None,
             random: bool = False) -> List[Dict[str, float]]:
  """Plays `task`'s scripted expert (or, `random`, uniform random actions) on training-range
  episodes (reset seeds `first_seed` + i, below `gold_jax.protocol.EVALUATION_BASE`: the other
  roles' episodes are not for tuning). Per episode: seed, reward, cost, goals reached and the
  env's cost by source (`cost_hazards`, `cost_gremlins`, ...)."""
  from gold_jax import envs, protocol  # pylint: disable=import-outside-toplevel
  if first_seed < 0 or first_seed + num_episodes > protocol.EVALUATION_BASE:
    raise ValueError(f'reset seeds {first_seed}..{first_seed + num_episodes - 1} leave the '
                     f'training range [0, {protocol.EVALUATION_BASE}): the evaluation, '
                     'demonstration and validation episodes are not for tuning')
  act = policy(task, gains)
  rng = np.random.default_rng(first_seed)
  rows = []
  with envs.make(task) as env:
    for i in range(num_episodes):
      obs, _ = env.reset(seed=first_seed + i)
      row = collections.Counter(seed=first_seed + i)
      while True:
        action = rng.uniform(-1, 1, env.act_dim) if random else act(obs[None])[0]
        obs, reward, cost, terminated, truncated, info = env.step(action)
        row['reward'] += reward
        row['cost'] += cost
        row['goals'] += bool(info.get('goal_met', False))
        for key, value in info.items():
          if key.startswith('cost_') and key != 'cost_sum' and np.isscalar(value):
            row[key] += float(value)
        if terminated or truncated:
          break
      rows.append(dict(row))
  return rows
