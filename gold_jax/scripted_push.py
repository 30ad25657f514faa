"""The scripted expert of safety-gymnasium's Push level-1 tasks (Point-Push, Car-Push): push the
box to the goal along a path clear of the hazards.

Like `gold_jax.scripted.GoalController`, it reads only the observation vector the learners see
and keeps no state between steps. Every step:

1. Decode the box, the goal and the pillar exactly (`scripted.locate`), the hazards with
   `decode`, all in the robot's lidar frame.
2. Box path: among 72 headings from the box, the one closest to the goal whose segment (to
   the goal, at most `box_look` m) keeps the robot, trailing the box, clear of hazards and the
   pillar. `u` is that direction: the box will be pushed along it.
3. Behind point P = box − u·`behind`. The robot is "behind" if it lies within a narrow cone
   behind the box about −u. Then it pushes: heading towards the box, corrected by
   `k_push`·(misalignment of robot→box with u). Otherwise it drives to P with the heading
   chooser of `scripted.GoalController`, treating the box (a disc) as one more obstacle.
4. Speed and turn loops as in `scripted.GoalController`; reverse only when no heading is clear.

Notes: level-1 hazards cost 1 per step inside (safety-gymnasium's indicator cost), the pillar
costs nothing but blocks; the box has corner cubes (half extent 1.5 s, corners 2.12 s). Hazard
lidars alias into both neighbouring bins, so `decode` peels objects off instead of reading
one point per lit bin (those phantom points made the chosen box path flip from step to step).
Gains: chosen on the training range of reset seeds (1000-1009) only, one set for both robots.
There (10 episodes each): Point-Push reward 3.2 at cost 0, Car-Push 5.3 at cost 0; a random
policy earns 0.2 and -2.6 (`experiments.scripted_episodes`).

    act = scripted.policy('Car-Push')   # act(obs (n, 60+)) -> actions (n, 2)
"""
import dataclasses
from typing import Dict

import numpy as np

from gold_jax import scripted

HEADINGS = scripted.HEADINGS
HAZARD_RADIUS = 0.3  # Push level 1's hazards (m).
PILLAR_RADIUS = 0.2  # Its pillar: it blocks, and costs nothing at level 1.


def decode(lidar, radius, max_objects=4):
  """Objects (points (k, 2), radii (k,)) of an aliased lidar (an object at fraction `a` of its
  bin b reads v there, a·v in bin b+1 and (1−a)·v in bin b−1; bins keep the max): take the
  brightest unexplained bin, bound `a` by both neighbours, drop the neighbours its leaks
  explain, repeat. Exact for an object alone in its bins; objects that share bins may be
  placed off by a fraction of their radius, or leave a phantom point."""
  lidar = np.asarray(lidar, dtype=float)
  n = scripted.BINS
  left = lidar.copy()
  pts = []
  for _ in range(max_objects):
    b = int(np.argmax(left))
    v = left[b]
    if v <= 0:
      break
    nxt, prv = lidar[(b + 1) % n] / v, lidar[(b - 1) % n] / v
    lo, hi = 1.0 - min(prv, 1.0), min(nxt, 1.0)  # a in [lo, hi]
    if nxt >= 1.0 and prv < 1.0:
      alias = lo
    elif prv >= 1.0 and nxt < 1.0:
      alias = hi
    else:
      alias = 0.5 * (lo + hi)
    alias = float(np.clip(alias, 0.0, 1.0))
    angle = (b + alias) * scripted.BIN
    dist = scripted.LIDAR_RANGE * (1.0 - v)
    pts.append([dist * np.cos(angle), dist * np.sin(angle)])
    left[b] = 0.0
    for k, leak in (((b + 1) % n, alias * v), ((b - 1) % n, (1 - alias) * v)):
      if left[k] <= leak + 0.03:
        left[k] = 0.0
  if not pts:
    return np.zeros((0, 2)), np.zeros(0)
  return np.array(pts), np.full(len(pts), radius)


def path_clearance(points, radii, centre, headings, back, ahead):
  """For each heading e, least distance from the segment [centre - back e, centre + ahead e]
  to an obstacle's edge; 9 where there are none."""
  if len(points) == 0:
    return np.full(headings.shape, 9.0)
  unit = np.stack([np.cos(headings), np.sin(headings)], axis=1)  # (H, 2)
  rel = points[None] - centre[None, None]  # (1, N, 2)
  along = np.clip(np.einsum('hk,xnk->hn', unit, rel), -back, ahead)  # (H, N)
  d = rel - along[..., None] * unit[:, None]
  return (np.linalg.norm(d, axis=-1) - radii[None]).min(axis=1)


@dataclasses.dataclass(frozen=True)
class Geometry:
  box: float  # Box half extent (m): the box is a cube of half size s with four cubes of half
  # size s/2 at its corners (+-s, +-s): 1.5 s from its centre along its axes, 2.12 s at corners.
  front: float  # Robot centre to its pushing front (m).
  body: float  # Robot's body radius for avoidance (m).


GEOMETRY = {'Point': Geometry(box=0.3, front=0.15, body=0.12),
            'Car': Geometry(box=0.19, front=0.17, body=0.16)}


@dataclasses.dataclass(frozen=True)
class PushGains:
  hazard_margin: float = 0.25  # Robot centre keeps this from a hazard's edge.
  hazard_tight: float = 0.15  # The smaller clearance accepted when no heading keeps that.
  pillar_margin: float = 0.05  # ... beyond its body radius from the pillar.
  box_margin: float = 0.06  # ... beyond its body radius from the box's circumcircle (approach).
  behind_extra: float = 0.12  # P lies box + front + this behind the box centre.
  cone: float = 0.5  # Push if the angle between robot->box and u is below this (rad) in contact,
  cone_far: float = 0.3  # ... this at the orbit ring,
  cone_depth: float = 0.6  # ... and the robot is within ring + this of the box centre.
  side_pref: float = 0.15  # Box-path tie-break towards the robot's side of the box.
  keep_pref: float = 0.1  # Heading tie-break towards the current driving direction.
  push_check: float = 0.3  # While pushing, the next this many m must keep off hazards.
  far: float = 0.6  # Beyond ring + far from the box, drive straight to the behind point.
  step: float = 0.8  # Orbit waypoints lie at most this far round the box (rad).
  look: float = 1.0  # Length (m) of the segment checked along a heading.
  box_look: float = 1.0  # Box path segment checked (m).
  box_hazard_margin: float = 0.15  # Box path keeps this from hazard edges.
  k_push: float = 1.5  # Heading correction per rad of misalignment while pushing.
  top_speed: float = 0.7  # Target speed (m/s) on the way to the box.
  push_speed: float = 0.5  # ... and while pushing it.
  kv: float = 4.0  # Forward command per m/s of speed error (`scripted.drive`).
  kt: float = 4.0  # Turn command per radian of heading error.


class PushController:
  """Pushes the box to the goal; `__call__(obs (n, d)) -> actions (n, 2)`."""

  def __init__(self, sensors: Dict[str, slice], robot_name: str, gains: PushGains = PushGains()):
    self.sensors = sensors
    self.robot = scripted.ROBOTS[robot_name]
    self.geo = GEOMETRY[robot_name]
    self.gains = gains

  def __call__(self, obs):
    return np.stack([self.act(o) for o in np.atleast_2d(obs)]).astype(np.float32)

  def act(self, obs):
    g, geo = self.gains, self.geo
    hp, hr = decode(obs[self.sensors['hazards_lidar']], HAZARD_RADIUS)
    pillar = scripted.locate(obs[self.sensors['pillars_lidar']])
    if pillar is None:
      pp, pr = np.zeros((0, 2)), np.zeros(0)
    else:
      pp = pillar[1] * np.array([[np.cos(pillar[0]), np.sin(pillar[0])]])
      pr = np.array([PILLAR_RADIUS])
    box = scripted.locate(obs[self.sensors['push_box_lidar']])
    goal = scripted.locate(obs[self.sensors['goal_lidar']])
    hazards, pillars = (hp, hr), (pp, pr)
    if box is None:  # Box beyond lidar range: head for the goal (or straight on) to find it.
      target_angle = goal[0] if goal is not None else self.robot.forward
      return self.navigate(obs, np.zeros(2), hazards, pillars, None,
                           2.0 * np.array([np.cos(target_angle), np.sin(target_angle)]))
    b = box[1] * np.array([np.cos(box[0]), np.sin(box[0])])
    if goal is None:  # Goal beyond range: get near the box, on the side facing the robot.
      u = b / max(np.linalg.norm(b), 1e-6)
    else:
      gp = goal[1] * np.array([np.cos(goal[0]), np.sin(goal[0])])
      to_goal = gp - b
      dist_bg = float(np.linalg.norm(to_goal))
      goal_dir = np.arctan2(to_goal[1], to_goal[0])
      # Box path: clear for the robot trailing the box.
      length = max(min(dist_bg, g.box_look), 0.05)
      back = geo.box + geo.front + g.behind_extra
      ch = path_clearance(hp, hr, b, HEADINGS, back, length)
      cp = path_clearance(pp, pr, b, HEADINGS, 0.0, length)
      ok = (ch > g.box_hazard_margin) & (cp > geo.box * 1.41 + 0.05)
      towards = np.cos(HEADINGS - goal_dir)
      # Tie-break towards box paths whose behind side faces the robot (b points box-wards).
      towards = towards + g.side_pref * np.cos(HEADINGS - np.arctan2(b[1], b[0]))
      if ok.any():
        u_angle = HEADINGS[np.argmax(np.where(ok, towards, -9.0))]
      else:  # No clear path: the one of greatest clearance.
        u_angle = HEADINGS[np.argmax(np.minimum(ch, cp) + 0.01 * towards)]
      u = np.array([np.cos(u_angle), np.sin(u_angle)])

    d_box = float(np.linalg.norm(b))
    bearing = np.arctan2(b[1], b[0])
    u_angle = np.arctan2(u[1], u[0])
    misalign = scripted.wrap(u_angle - bearing)  # Angle from robot->box to u.
    contact = geo.box + geo.front
    ring = geo.box * 1.41 + geo.body + g.box_margin  # Orbit radius around the box.
    # Cone of pushing: wider in contact than at the ring.
    frac = np.clip((d_box - contact) / max(ring - contact, 1e-3), 0.0, 1.0)
    cone = g.cone + (g.cone_far - g.cone) * frac
    if goal is not None and abs(misalign) < cone and d_box < ring + g.cone_depth:
      heading = bearing - g.k_push * misalign
      safe = scripted.clearance(hp, hr, np.array([heading]), g.push_check)[0] > g.hazard_tight
      if not safe:
        return self.navigate(obs, b, hazards, pillars, box,
                             b - u * (contact + g.behind_extra))
      speed = g.push_speed if d_box < ring + 0.1 else g.top_speed
      return self.drive(obs, heading, speed)
    # Orbit: waypoint on the ring, at most `step` rad around the box from the robot's side.
    phi_r = np.arctan2(-b[1], -b[0])  # Robot's polar angle about the box.
    phi_t = np.arctan2(-u[1], -u[0])
    dphi = scripted.wrap(phi_t - phi_r)
    if d_box > ring + g.far:  # Far: aim at the behind point directly.
      p = b - u * (contact + g.behind_extra)
    else:
      phi = phi_r + np.clip(dphi, -g.step, g.step)
      p = b + ring * np.array([np.cos(phi), np.sin(phi)])
      if abs(dphi) <= g.step:
        p = b - u * (contact + g.behind_extra)
    return self.navigate(obs, b, hazards, pillars, box, p)

  def drive(self, obs, heading, speed_cap, reverse=False):
    g = self.gains
    return scripted.drive(self.robot, obs[self.sensors['velocimeter']], heading, speed_cap,
                          g.kv, g.kt, reverse)

  def navigate(self, obs, b, hazards, pillars, box, p):
    """Drives to `p` around `hazards` and `pillars` ((points, radii) each) and the box at `b`."""
    g, geo = self.gains, self.geo
    dist_p = float(np.linalg.norm(p))
    length = max(min(dist_p, g.look), 0.05)
    ch = scripted.clearance(*hazards, HEADINGS, length)
    cp = scripted.clearance(*pillars, HEADINGS, length)
    if box is not None:
      cb = scripted.clearance(b[None], np.array([geo.box * 1.41]), HEADINGS, length)
    else:
      cb = np.full(HEADINGS.shape, 9.0)
    p_dir = np.arctan2(p[1], p[0])
    towards = np.cos(HEADINGS - p_dir) + g.keep_pref * np.cos(HEADINGS - self.robot.forward)
    pill = cp > geo.body + g.pillar_margin
    boxc = cb > geo.body + g.box_margin * 0.5
    escape = False
    for ok in (pill & boxc & (ch > g.hazard_margin) & (towards > 0),
               pill & boxc & (ch > g.hazard_tight),
               pill & (ch > g.hazard_tight),
               ch > g.hazard_tight):
      if ok.any():
        score = np.where(ok, towards, -10.0)
        break
    else:
      escape = True
      score = ch
    heading = HEADINGS[np.argmax(score)]
    cap = g.top_speed if dist_p > 0.3 else g.top_speed * max(dist_p / 0.3, 0.3)
    return self.drive(obs, heading, cap, reverse=escape)

