"""Bird's-eye view of a scenario: map, other road users, the human ego log and policy paths.

Coordinates follow MetaDrive's `ScenarioEnv`: with `centre=True` everything is shifted so the
ego starts at the origin, the frame in which `ego.position` (and `demos` `ego_xy`) is measured.
"""

import pathlib
from typing import Any, Dict, Mapping, Optional

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gold_jax.files import atomic_path

AGENT_COLOURS = {'VEHICLE': '#7f8fa6', 'PEDESTRIAN': '#44bd32', 'CYCLIST': '#e1a03a'}
PATH_COLOURS = ('#e84118', '#8c7ae6', '#00a8ff', '#fbc531')


def _ego(scenario):
  sdc = str(scenario['metadata']['sdc_id'])
  state = scenario['tracks'][sdc]['state']
  valid = np.asarray(state['valid']).reshape(-1).astype(bool)
  return sdc, np.asarray(state['position'], dtype=np.float64)[valid, :2]


def _draw_map(ax, map_features: Mapping[str, Any], origin):
  for feature in map_features.values():
    kind = str(feature.get('type', ''))
    if 'polygon' in feature and ('LANE' in kind or kind in ('CROSSWALK', 'SPEED_BUMP', 'DRIVEWAY')):
      polygon = np.asarray(feature['polygon'], dtype=np.float64)[:, :2] - origin
      if len(polygon) >= 3:
        ax.fill(polygon[:, 0], polygon[:, 1], color='#dcdde1' if 'LANE' in kind else '#f5f6fa',
                edgecolor='none', zorder=0)
    if 'polyline' not in feature:
      continue
    line = np.atleast_2d(np.asarray(feature['polyline'], dtype=np.float64))[:, :2] - origin
    if kind.startswith('ROAD_EDGE') or 'BOUNDARY' in kind:
      ax.plot(line[:, 0], line[:, 1], color='#2f3640', lw=1.0, zorder=1)
    elif kind.startswith('ROAD_LINE'):
      ax.plot(line[:, 0], line[:, 1], color='#e1b12c' if 'YELLOW' in kind else '#718093',
              lw=0.7, ls='--' if 'BROKEN' in kind else '-', zorder=1)
    elif kind.startswith('LANE'):
      ax.plot(line[:, 0], line[:, 1], color='#c8ccd4', lw=0.4, ls=':', zorder=1)


def _draw_agents(ax, tracks: Mapping[str, Any], ego_id: str, origin):
  for track_id, track in tracks.items():
    if track_id == ego_id:
      continue
    state = track['state']
    valid = np.asarray(state['valid']).reshape(-1).astype(bool)
    xy = np.asarray(state['position'], dtype=np.float64)[valid, :2] - origin
    if len(xy) == 0:
      continue
    colour = AGENT_COLOURS.get(str(track.get('type')), '#bdc3c7')
    ax.plot(xy[:, 0], xy[:, 1], color=colour, lw=0.8, alpha=0.8, zorder=2)
    ax.plot(xy[-1, 0], xy[-1, 1], 'o', color=colour, ms=2.5, zorder=2)


def plot_scenario(scenario: Dict[str, Any], out_path,
                  paths: Optional[Mapping[str, np.ndarray]] = None, centre: bool = True,
                  title: Optional[str] = None, margin: float = 30.0) -> pathlib.Path:
  """Writes a PNG of `scenario` with the ego log and each `(label, (T, 2) xy)` in `paths`."""
  ego_id, ego_xy = _ego(scenario)
  origin = ego_xy[0] if centre and len(ego_xy) else np.zeros(2)
  fig = Figure(figsize=(7, 7), dpi=120)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  _draw_map(ax, scenario['map_features'], origin)
  _draw_agents(ax, scenario['tracks'], ego_id, origin)
  shown = [ego_xy - origin]
  ax.plot(*(ego_xy - origin).T, color='#273c75', lw=2.5, label='human ego log', zorder=3)
  for i, (label, xy) in enumerate((paths or {}).items()):
    xy = np.asarray(xy, dtype=np.float64)[:, :2]
    shown.append(xy)
    ax.plot(xy[:, 0], xy[:, 1], color=PATH_COLOURS[i % len(PATH_COLOURS)], lw=1.5, ls='--',
            label=label, zorder=4)
  ax.plot(*(ego_xy[0] - origin), 'k^', ms=6, zorder=5, label='ego start')
  everything = np.concatenate(shown)
  low, high = everything.min(0) - margin, everything.max(0) + margin
  half = (high - low).max() / 2
  middle = (high + low) / 2
  ax.set_xlim(middle[0] - half, middle[0] + half)
  ax.set_ylim(middle[1] - half, middle[1] + half)
  ax.set_aspect('equal')
  ax.set_xlabel('x (m)')
  ax.set_ylabel('y (m)')
  ax.set_title(title or f'scenario {scenario.get("id", "")}')
  ax.legend(loc='upper right', fontsize=8)
  fig.tight_layout()
  return _save(fig, out_path)


def _save(fig: Figure, out_path) -> pathlib.Path:
  out_path = pathlib.Path(out_path)
  with atomic_path(out_path) as tmp:
    fig.savefig(tmp, format='png')
  return out_path
