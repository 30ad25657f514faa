r"""Evaluates a saved guide, student or expert on a task.

  python -m experiments.evaluate --ckpt=runs/cc/gold --episodes=10 --plot

`--ckpt` is a run directory (its `checkpoints/` is used) or a checkpoint directory of any
gold-jax learner: a guide from `train_guide.py` (DT or BC), a student from `distill.py` (IQL or
CVPO) or an expert from `collect.py` (SAC). Prints reward, cost and (tasks that define it)
success as mean ± std over `--episodes` episodes and writes them to `<out_dir>/evaluation.json`.
`--plot` saves `trajectory.png`: the agent's x-y path for simulators that expose its position
(bullet-safety-gym, safety-gymnasium; with the Circle task's circle and boundaries), else reward
and cost per step. `--video` saves `episode.gif` when the simulator can render off-screen, and
says why not otherwise. `--export=student.npz` also writes the numpy deployment artifact of an
MLP policy (`gold_jax.export`) and prints its decision latency. `--scenarios=DIR` (a driving
policy) drives each scenario of a ScenarioNet directory once instead, each to its own length,
and adds the per-scenario outcomes.
"""

import dataclasses
import os
import time
from typing import Any, Dict, List, Optional

import jax
import numpy as np

from gold_jax import envs
from gold_jax import episodes
from gold_jax import files
from gold_jax import export as export_lib
from gold_jax.checkpoints import checkpoint_dir
from gold_jax.evaluation import run_episodes
from gold_jax.launch import env_options, save_json
from gold_jax.policies import load_policy


@dataclasses.dataclass(frozen=True)
class Config:
  ckpt: str = ''  # Run directory or checkpoint directory.
  task: str = ''  # Task; '' = the one recorded with the checkpoint.
  episodes: int = 10  # Evaluation episodes, each with its own seed.
  num_envs: int = 10  # Env copies stepped together (at most `episodes`).
  target_return: Optional[float] = None  # DT guides: return-to-go; None: the saved one.
  plot: bool = False  # Save trajectory.png of the first `plot_episodes` episodes.
  plot_episodes: int = 3  # Episodes drawn in the trajectory plot.
  video: bool = False  # Save episode.gif of one episode (if the simulator renders).
  video_steps: int = 300  # Most frames in the video.
  export: str = ''  # Also export an MLP policy to this .npz (gold_jax.export).
  out_dir: str = ''  # Where outputs go; '' = <run directory>/evaluation.
  max_episode_steps: Optional[int] = None  # Episode length override (tests); None: the task's.
  seed: int = 0  # Seed of the first episode (episode i uses seed + i).
  scenarios: str = ''  # MetaDrive-Waymo: a ScenarioNet directory whose every scenario is driven
                       # once (instead of --episodes), with success, crash, out-of-road rates.


# -- Trajectories, plots, video ------------------------------------------------------------------


# safety-gymnasium object groups drawn on trajectory plots: (label, colour).
_SCENE_COLOURS = (('hazard', 'tab:purple'), ('vase', 'tab:cyan'), ('pillar', 'tab:gray'),
                  ('gremlin', 'tab:orange'), ('button', 'tab:olive'))


def play(policy, env, seed: int, max_steps: Optional[int] = None,
         frame=None) -> Dict[str, Any]:
  """One episode on a single `SafeEnv` (`gold_jax.episodes.play`): rewards, costs, positions
  (where the simulator exposes them), frames, and for safety-gymnasium its layout (`scene`)
  and every goal it set (`goals`, in order: goal tasks move the goal once it is reached)."""
  seen: Dict[str, Any] = {'goals': [], 'frames': []}

  def probe(single):
    layout = single.scene()
    if 'scene' not in seen:  # Right after the reset.
      seen['scene'] = layout
    elif frame is not None:
      seen['frames'].append(frame())
    goal = layout.get('goal')
    if goal is not None and (not seen['goals'] or goal[:2] != seen['goals'][-1][:2]):
      seen['goals'].append(goal)
    return single.agent_position()

  played = episodes.play(policy, env, 1, seed, record=True, probe=probe, max_steps=max_steps)
  episode = played['episodes'][0]
  positions = episode['probe']
  return {'rewards': episode['rewards'].astype(np.float64),
          'costs': episode['costs'].astype(np.float64),
          'positions': None if positions[0] is None else np.asarray(positions),
          'frames': seen['frames'], 'scene': seen['scene'], 'goals': seen['goals']}


def plot_trajectories(episodes: List[Dict[str, Any]], geometry: Dict[str, float], path: str,
                      title: str) -> str:
  """x-y paths (cost-incurring steps marked) when positions exist, else reward/cost per step."""
  from gold_jax.plots import _pyplot  # pylint: disable=g-import-not-at-top
  plt = _pyplot()
  has_xy = all(e['positions'] is not None and len(e['positions']) > 1 for e in episodes)
  if has_xy and any(e.get('scene') for e in episodes):
    # safety-gymnasium: each episode has its own layout, so one panel per episode.
    fig, axes = plt.subplots(1, len(episodes), figsize=(5 * len(episodes), 5), squeeze=False)
    for i, (ax, e) in enumerate(zip(axes[0], episodes)):
      _draw_scene(ax, plt, e)
      xy = e['positions']
      ax.plot(xy[:, 0], xy[:, 1], lw=1.2, color='tab:blue', label='path')
      ax.plot(xy[0, 0], xy[0, 1], 'o', color='tab:blue')
      unsafe = np.flatnonzero(e['costs'] > 0) + 1
      if unsafe.size:
        ax.scatter(xy[unsafe, 0], xy[unsafe, 1], s=6, color='red', zorder=3, label='cost > 0')
      ax.set_title(f'episode {i}: R={e["rewards"].sum():.1f}, C={e["costs"].sum():.0f}',
                   fontsize=9)
      ax.set_aspect('equal')
      ax.set_xlabel('x')
      ax.set_ylabel('y')
      handles, labels = ax.get_legend_handles_labels()
      unique = dict(zip(labels, handles))
      ax.legend(unique.values(), unique.keys(), fontsize=7, loc='upper right')
  elif has_xy:
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for i, e in enumerate(episodes):
      xy = e['positions']
      line, = ax.plot(xy[:, 0], xy[:, 1], lw=1.2,
                      label=f'episode {i}: R={e["rewards"].sum():.1f}, C={e["costs"].sum():.0f}')
      ax.plot(xy[0, 0], xy[0, 1], 'o', color=line.get_color())
      unsafe = np.flatnonzero(e['costs'] > 0) + 1
      if unsafe.size:
        ax.scatter(xy[unsafe, 0], xy[unsafe, 1], s=6, color='red', zorder=3)
    if 'radius' in geometry:
      angle = np.linspace(0, 2 * np.pi, 200)
      ax.plot(geometry['radius'] * np.cos(angle), geometry['radius'] * np.sin(angle), 'k--',
              lw=0.8, label='circle')
    if 'x_lim' in geometry:
      for x in (-geometry['x_lim'], geometry['x_lim']):
        ax.axvline(x, color='red', lw=1.0, alpha=0.6)
    ax.set_aspect('equal')
    ax.set_xlabel('x')
    ax.set_ylabel('y')
    ax.legend(fontsize=7, loc='upper right')
  else:
    fig, axes = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    for i, e in enumerate(episodes):
      axes[0].plot(e['rewards'], lw=0.8, label=f'episode {i}')
      axes[1].plot(np.cumsum(e['costs']), lw=0.8)
    axes[0].set_ylabel('reward per step')
    axes[1].set_ylabel('cumulative cost')
    axes[1].set_xlabel('step')
    axes[0].legend(fontsize=7)
  fig.suptitle(title)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches='tight')
  plt.close(fig)
  return path


def _draw_scene(ax, plt, episode: Dict[str, Any]) -> None:
  """Objects of a safety-gymnasium layout and the goals of the episode, numbered in order."""
  for label, colour in _SCENE_COLOURS:
    for x, y, r in episode['scene'].get(label, ()):
      ax.add_patch(plt.Circle((x, y), r, color=colour, alpha=0.35, label=label))
  for k, (x, y, r) in enumerate(episode.get('goals', ())):
    ax.add_patch(plt.Circle((x, y), r, color='tab:green', alpha=0.35, label='goal'))
    ax.annotate(str(k + 1), (x, y), ha='center', va='center', fontsize=7)


def make_frame_env(task: str, seed: int, options: Dict[str, Any]):
  """`(env, frame_fn)` of an env that renders RGB frames off-screen; raises if it cannot."""
  spec = envs.get_spec(task)
  if spec.simulator == 'safety_gymnasium':
    options = dict(options, render_mode='rgb_array')
  env = envs.make(task, seed=seed, **options)
  return env, env.render_frame


def save_video(policy, task: str, seed: int, options, path: str, max_steps: int) -> str:
  """Renders one episode to a GIF; raises with the reason when rendering is unavailable."""
  import imageio  # pylint: disable=g-import-not-at-top
  env, frame = make_frame_env(task, seed, options)
  try:
    first = frame()
    if first is None or np.asarray(first).ndim != 3:
      raise RuntimeError('the simulator returned no RGB frame')
    episode = play(policy, env, seed, max_steps=max_steps, frame=frame)
  finally:
    env.close()
  frames = [np.asarray(f, np.uint8) for f in [first] + episode['frames']]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with files.atomic_path(path) as tmp:
    imageio.mimsave(tmp, frames, duration=0.05, loop=0)
  return path


# -- Export ---------------------------------------------------------------------------------------


def export_policy(info: Dict[str, Any], path: str, obs: np.ndarray) -> Dict[str, float]:
  """Writes the numpy artifact of an MLP policy; returns its latency and the JAX act's."""
  if 'state' not in info:
    raise ValueError(f'only MLP policies can be exported, not a {info["algo"]!r} guide')
  module, state = info['module'], info['state']
  export_lib.export_actor(state, path, metadata={'task': info['task'], 'algo': info['algo']})
  policy = export_lib.NumpyPolicy.load(path)
  expected = np.asarray(module.act(state, obs, jax.random.PRNGKey(0), deterministic=True))
  error = float(np.max(np.abs(policy(obs) - expected)))
  single = obs[0]
  key = jax.random.PRNGKey(0)
  return {
      'export/max_abs_error': error,
      'export/numpy_latency_ms': 1e3 * export_lib.latency(lambda: policy(single)),
      'export/jax_latency_ms': 1e3 * export_lib.latency(
          lambda: np.asarray(module.act(state, single, key, deterministic=True))),
      'export/num_params': float(policy.num_params()),
      'export/file_bytes': float(os.path.getsize(path)),
  }


# -- Run -----------------------------------------------------------------------------------------


def summarize(episodes: Dict[str, np.ndarray], has_success: bool) -> Dict[str, float]:
  out = {'reward_mean': episodes['return'].mean(), 'reward_std': episodes['return'].std(),
         'cost_mean': episodes['cost'].mean(), 'cost_std': episodes['cost'].std(),
         'length_mean': episodes['length'].mean()}
  if has_success:
    success = episodes['success'].astype(np.float64)
    out.update(success_mean=success.mean(), success_std=success.std())
  return {k: float(v) for k, v in out.items()}


def _check_sizes(config: Config, info: Dict[str, Any], task: str, env) -> None:
  if (env.obs_dim, env.act_dim) != (info['obs_dim'], info['act_dim']):
    raise ValueError(f'{config.ckpt} was trained on {info["task"] or "an unknown task"!r} with '
                     f'obs_dim={info["obs_dim"]}, act_dim={info["act_dim"]}; task {task!r} '
                     f'has obs_dim={env.obs_dim}, act_dim={env.act_dim}')


def run_scenarios(config: Config, policy, info: Dict[str, Any], task: str, out_dir: str
                  ) -> Dict[str, Any]:
  """Drives each scenario of `config.scenarios` once (`gold_jax.driving.evaluate`); writes and
  returns the aggregate metrics and the per-scenario outcomes."""
  from gold_jax.driving import evaluate as driving_eval  # pylint: disable=import-outside-toplevel
  from gold_jax.envs import metadrive as md  # pylint: disable=import-outside-toplevel
  if task != driving_eval.TASK:
    raise ValueError(f'--scenarios replays ScenarioNet scenarios ({driving_eval.TASK}); '
                     f'{config.ckpt} is a {task!r} policy')
  env = driving_eval.make_scenario_env(config.scenarios, seed=config.seed,
                                       max_episode_steps=md.episode_steps(config.scenarios))
  try:
    _check_sizes(config, info, task, env)
    start = time.perf_counter()
    metrics, played = driving_eval.evaluate_scenarios(policy, env, record_path=False)
    seconds = time.perf_counter() - start
  finally:
    env.close()
  result = {'ckpt': os.path.abspath(config.ckpt), 'task': task, 'algo': info['algo'],
            'scenarios': os.path.abspath(config.scenarios), 'seconds': seconds,
            **{k: float(v) for k, v in metrics.items()},
            'per_scenario': driving_eval.episode_rows(played)}
  print(f'{info["algo"]} on {int(metrics["episodes"])} scenarios of {config.scenarios}: reward '
        f'{metrics["reward/mean"]:.2f} ± {metrics["reward/std"]:.2f}, cost '
        f'{metrics["cost/mean"]:.2f}, success {metrics["success_rate"]:.3f}, crash '
        f'{metrics["crash_rate"]:.3f}, out of road {metrics["out_of_road_rate"]:.3f}')
  save_json(os.path.join(out_dir, 'evaluation.json'), result)
  return result


def run(config: Config, workdir: str = '') -> Dict[str, Any]:
  """Evaluates `config.ckpt`; writes evaluation.json (and plot/video/export) to the out dir."""
  if not config.ckpt:
    raise ValueError('--ckpt is required')
  if config.episodes <= 0 or config.num_envs <= 0:
    raise ValueError('--episodes and --num_envs must be positive')
  policy, info = load_policy(config.ckpt, config.target_return)
  task = config.task or info['task']
  if not task:
    raise ValueError(f'{config.ckpt} records no task: pass --task')
  directory = checkpoint_dir(config.ckpt)
  run_dir = os.path.dirname(directory) if directory.endswith('checkpoints') else directory
  out_dir = workdir or config.out_dir or os.path.join(run_dir, 'evaluation')
  if config.scenarios:
    return run_scenarios(config, policy, info, task, out_dir)
  options = env_options(config.max_episode_steps)
  env = envs.make_vec(task, min(config.num_envs, config.episodes), seed=config.seed, **options)
  try:
    _check_sizes(config, info, task, env)
    start = time.perf_counter()
    episodes = run_episodes(policy, env, config.episodes, seed=config.seed)
    seconds = time.perf_counter() - start
    has_success = bool(env.spec.has_success)
  finally:
    env.close()
  result = {'ckpt': os.path.abspath(config.ckpt), 'task': task, 'algo': info['algo'],
            'episodes': config.episodes, 'seconds': seconds,
            **summarize(episodes, has_success),
            'episode_returns': episodes['return'].tolist(),
            'episode_costs': episodes['cost'].tolist()}
  line = (f'{info["algo"]} on {task} ({config.episodes} episodes): reward '
          f'{result["reward_mean"]:.2f} ± {result["reward_std"]:.2f}, cost '
          f'{result["cost_mean"]:.2f} ± {result["cost_std"]:.2f}')
  if has_success:
    line += f', success {result["success_mean"]:.2f} ± {result["success_std"]:.2f}'
  print(line)
  if config.plot:
    single = envs.make(task, seed=config.seed, **options)
    try:
      played = [play(policy, single, config.seed + i) for i in range(config.plot_episodes)]
      geometry = single.geometry()
    finally:
      single.close()
    result['plot'] = plot_trajectories(played, geometry, os.path.join(out_dir, 'trajectory.png'),
                                       f'{info["algo"]} on {task}')
    print(f'trajectory plot: {result["plot"]}')
  if config.video:
    try:
      result['video'] = save_video(policy, task, config.seed, options,
                                   os.path.join(out_dir, 'episode.gif'), config.video_steps)
      print(f'video: {result["video"]}')
    except Exception as e:  # pylint: disable=broad-except  # Rendering is optional.
      result['video_skipped'] = f'{type(e).__name__}: {e}'
      print(f'video skipped: rendering is unavailable ({result["video_skipped"]})')
  if config.export:
    obs = np.random.default_rng(config.seed).standard_normal(
        (16, info['obs_dim'])).astype(np.float32)
    result.update(export_policy(info, config.export, obs))
    print(f'exported {config.export}: {result["export/num_params"]:.0f} parameters, '
          f'{result["export/file_bytes"] / 1024:.1f} KiB, max |numpy - jax| '
          f'{result["export/max_abs_error"]:.2e}; latency numpy '
          f'{result["export/numpy_latency_ms"]:.3f} ms, jax '
          f'{result["export/jax_latency_ms"]:.3f} ms per decision')
  save_json(os.path.join(out_dir, 'evaluation.json'), result)
  return result
