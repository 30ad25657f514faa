"""Learning-curve figures: the mean across seeds with a min–max band, reward and cost panels.

A min–max band stays within the values the seeds reached, so a cost band never dips below
zero; step axes read `5k`, `1.2M`.
"""

import os
from typing import Mapping, Optional, Sequence, Tuple

import numpy as np

Curve = Tuple[Sequence[float], Sequence[float]]  # (steps, values) of one seed.


def _pyplot():
  """Matplotlib with the non-interactive Agg backend (no display needed)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


def smooth(values: np.ndarray, window: int) -> np.ndarray:
  """Trailing moving average over `window` points (shorter at the start); 1 = unchanged."""
  values = np.asarray(values, np.float64)
  if window <= 1 or values.size == 0:
    return values
  sums = np.cumsum(np.insert(values, 0, 0.0))
  idx = np.arange(1, values.size + 1)
  start = np.maximum(idx - window, 0)
  return (sums[idx] - sums[start]) / (idx - start)


def aggregate(seeds: Sequence[Curve], num_points: Optional[int] = None
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`(steps, mean, std)` across seeds on a common step grid (see `stack`)."""
  grid, stacked = stack(seeds, num_points)
  return grid, stacked.mean(0), stacked.std(0)


def stack(seeds: Sequence[Curve], num_points: Optional[int] = None
          ) -> Tuple[np.ndarray, np.ndarray]:
  """`(steps, values (seeds, steps))` on a common step grid.

  Seeds logged at different steps are linearly interpolated onto the steps of the
  longest-logged seed, restricted to the range every seed covers.
  """
  curves = []
  for steps, values in seeds:
    steps, values = np.asarray(steps, np.float64), np.asarray(values, np.float64)
    if steps.shape != values.shape or steps.ndim != 1 or steps.size == 0:
      raise ValueError(f'each seed needs equal-length 1-d steps and values, got '
                       f'{steps.shape} and {values.shape}')
    order = np.argsort(steps, kind='stable')
    curves.append((steps[order], values[order]))
  if not curves:
    raise ValueError('no seeds to aggregate')
  lo = max(s[0] for s, _ in curves)
  hi = min(s[-1] for s, _ in curves)
  if lo > hi:
    raise ValueError(f'seeds share no step range (latest start {lo}, earliest end {hi})')
  grid = max((s for s, _ in curves), key=len)
  grid = grid[(grid >= lo) & (grid <= hi)]
  if num_points is not None and grid.size > num_points:
    grid = np.linspace(lo, hi, num_points)
  return grid, np.stack([np.interp(grid, s, v) for s, v in curves])


def step_label(x: float, _=None) -> str:
  """Axis label of an env-step count: 0, 500, 5k, 12.5k, 1.2M."""
  for scale, suffix in ((1e6, 'M'), (1e3, 'k')):
    if abs(x) >= scale:
      return f'{x / scale:.3g}{suffix}'
  return f'{x:.0f}'


def _step_axis(ax) -> None:
  from matplotlib import ticker  # pylint: disable=import-outside-toplevel
  ax.xaxis.set_major_formatter(ticker.FuncFormatter(step_label))
  ax.xaxis.set_major_locator(ticker.MaxNLocator(6))


def _plot_runs(ax, runs: Mapping[str, Sequence[Curve]], smoothing: int,
               colors: Optional[Mapping[str, str]] = None) -> None:
  for name, seeds in runs.items():
    steps, values = stack([(s, smooth(v, smoothing)) for s, v in seeds])
    color = (colors or {}).get(name)
    line, = ax.plot(steps, values.mean(0), color=color, label=f'{name} (n={len(seeds)})')
    ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.2,
                    linewidth=0)
  _step_axis(ax)
  ax.grid(alpha=0.3)


def _save(fig, out_png: str) -> str:
  out_png = os.fspath(out_png)
  os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
  fig.savefig(out_png, dpi=120, bbox_inches='tight')
  _pyplot().close(fig)
  return out_png


def learning_curves(runs: Mapping[str, Sequence[Curve]], metric: str, out_png: str,
                    x_label: str = 'environment steps', title: Optional[str] = None,
                    smoothing: int = 1) -> str:
  """One panel: per run, the mean of `metric` across seeds with a min–max band.

  `runs` maps a run name to a list of `(steps, values)`, one per seed. Returns `out_png`.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  _plot_runs(ax, runs, smoothing)
  ax.set_xlabel(x_label)
  ax.set_ylabel(metric)
  ax.set_title(title or metric)
  ax.legend(loc='best', fontsize='small')
  return _save(fig, out_png)


def reward_cost_curves(reward_runs: Mapping[str, Sequence[Curve]],
                       cost_runs: Mapping[str, Sequence[Curve]], out_png: str,
                       cost_threshold: Optional[float] = None,
                       x_label: str = 'environment steps', title: Optional[str] = None,
                       smoothing: int = 1) -> str:
  """Two panels side by side: episode reward and episode cost, with the threshold κ dashed.

  Both mappings are `run name -> [(steps, values) per seed]`; names shared by the two
  panels get the same colour. Returns `out_png`.
  """
  plt = _pyplot()
  fig, (ax_reward, ax_cost) = plt.subplots(1, 2, figsize=(11, 4))
  cycle = plt.rcParams['axes.prop_cycle'].by_key()['color']
  names = list(dict.fromkeys([*reward_runs, *cost_runs]))
  colors = {name: cycle[i % len(cycle)] for i, name in enumerate(names)}
  for ax, runs in ((ax_reward, reward_runs), (ax_cost, cost_runs)):
    _plot_runs(ax, runs, smoothing, colors)
    ax.set_xlabel(x_label)
  ax_reward.set_ylabel('episode reward')
  ax_cost.set_ylabel('episode cost')
  if cost_threshold is not None:
    ax_cost.axhline(cost_threshold, color='black', linestyle='--', linewidth=1,
                    label=f'threshold κ = {cost_threshold:g}')
  ax_reward.set_title('reward')
  ax_cost.set_title('cost')
  ax_cost.legend(loc='best', fontsize='small')
  if title:
    fig.suptitle(title)
  return _save(fig, out_png)

