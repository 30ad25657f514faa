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
MLP policy (`gold_jax.export`) and prints its decision latency.
"""

import dataclasses
import importlib
import os
import time
from typing import Any, Dict, List, Optional, Tuple

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from experiments.collect import config_from_flags, env_options, load_json, save_json
from gold_jax import envs
from gold_jax import export as export_lib
from gold_jax.checkpoints import CheckpointManager
from gold_jax.evaluation import run_episodes
from gold_jax.policies import MLPPolicy, load_guide, read_guide_metadata


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


# -- Loading any checkpoint --------------------------------------------------------------------


def checkpoint_dir(path: str) -> str:
  """`path/checkpoints` for a run directory, else `path` itself."""
  path = os.path.abspath(os.fspath(path))
  nested = os.path.join(path, 'checkpoints')
  if not os.path.isdir(path):
    raise FileNotFoundError(f'checkpoint directory {path!r} does not exist')
  return nested if os.path.isdir(nested) else path


def _rebuild(cls, values, default):
  """A (possibly nested) frozen config from its JSON form; lists become tuples."""
  kwargs = {}
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - names)
  if unknown:
    raise ValueError(f'checkpoint config has fields {unknown} unknown to {cls.__qualname__}')
  for name, value in values.items():
    current = getattr(default, name)
    if dataclasses.is_dataclass(current) and isinstance(value, dict):
      value = _rebuild(type(current), value, current)
    elif isinstance(value, list):
      value = tuple(value)
    kwargs[name] = value
  return cls(**kwargs)


def restore_learner(path: str) -> Tuple[Any, Any, Dict[str, Any]]:
  """`(learner module, state, metadata)` of the latest checkpoint in `path` (any learner).

  The learner is the module of the saved config class (`gold_jax.agents.<name>`); the
  template is built with the saved config and sizes, so no flag has to repeat them.
  """
  directory = checkpoint_dir(path)
  with CheckpointManager(directory, max_to_keep=None) as manager:
    metadata = manager.read_metadata()
    config_class = metadata.get('config_class', '')
    module_name, _, class_name = config_class.rpartition('.')
    if not module_name.startswith('gold_jax.agents.'):
      raise ValueError(f'{directory}: not a gold-jax learner checkpoint (config class '
                       f'{config_class!r})')
    module = importlib.import_module(module_name)
    config_cls = getattr(module, class_name)
    config = _rebuild(config_cls, metadata['config'], config_cls())
    extra = metadata.get('extra', {})
    obs_dim = metadata.get('obs_dim', extra.get('obs_dim'))
    act_dim = metadata.get('act_dim', extra.get('act_dim'))
    if obs_dim is None or act_dim is None:
      raise ValueError(f'{directory}: checkpoint records no obs_dim/act_dim')
    init = jax.jit(module.init, static_argnums=(1, 2, 3))  # One compilation, not one per op.
    template = init(jax.random.PRNGKey(0), int(obs_dim), int(act_dim), config)
    state = manager.restore(template)
  metadata = dict(metadata, obs_dim=int(obs_dim), act_dim=int(act_dim),
                  learner=module_name.rsplit('.', 1)[-1])
  return module, state, metadata


def recorded_task(path: str, metadata: Dict[str, Any]) -> str:
  """The task saved with a checkpoint, or in its run's config.json; '' when unknown."""
  task = metadata.get('extra', {}).get('task') or metadata.get('task')
  if task:
    return task
  directory = checkpoint_dir(path)
  for run_dir in (os.path.dirname(directory), directory):
    config = load_json(os.path.join(run_dir, 'config.json'))
    if config and config.get('task'):
      return config['task']
  return ''


def load_policy(path: str, target_return: Optional[float] = None):
  """`(policy, info)` for any checkpoint: a guide through `load_guide`, else an MLP learner.

  `info` holds `kind` ('guide' or 'learner'), `algo`, `task` ('' if unknown), `obs_dim`,
  `act_dim`, and for MLP learners `module` and `state`.
  """
  directory = checkpoint_dir(path)
  try:
    guide = read_guide_metadata(directory)
  except ValueError:
    guide = None
  if guide is not None:
    policy = load_guide(directory, target_return)
    info = {'kind': 'guide', 'algo': guide['algo'], 'task': guide['task'],
            'obs_dim': int(guide['obs_dim']), 'act_dim': int(guide['act_dim'])}
    if guide['algo'] == 'bc':
      info.update(module=policy.module, state=policy.state)
    return policy, info
  module, state, metadata = restore_learner(directory)
  info = {'kind': 'learner', 'algo': metadata['learner'], 'task': recorded_task(path, metadata),
          'obs_dim': metadata['obs_dim'], 'act_dim': metadata['act_dim'], 'module': module,
          'state': state}
  return MLPPolicy(module, state, deterministic=True), info


# -- Trajectories, plots, video ------------------------------------------------------------------


def agent_position(env) -> Optional[np.ndarray]:
  """The agent's (x, y) in the simulator, or None where it cannot be read."""
  sim = getattr(env, 'env', None)
  if sim is None:
    return None
  unwrapped = getattr(sim, 'unwrapped', sim)
  getters = (
      lambda: unwrapped.agent.get_position(),  # bullet-safety-gym
      lambda: unwrapped.task.agent.pos,  # safety-gymnasium
      lambda: unwrapped.agent.position,  # MetaDrive
  )
  for getter in getters:
    try:
      position = np.asarray(getter(), np.float64)
    except Exception:  # pylint: disable=broad-except  # Each simulator exposes a different one.
      continue
    if position.ndim == 1 and position.size >= 2 and np.all(np.isfinite(position[:2])):
      return position[:2].copy()
  return None


# safety-gymnasium object groups drawn on trajectory plots: (attribute, label, colour).
_SCENE_GROUPS = (('hazards', 'hazard', 'tab:purple'), ('vases', 'vase', 'tab:cyan'),
                 ('pillars', 'pillar', 'tab:gray'), ('gremlins', 'gremlin', 'tab:orange'),
                 ('buttons', 'button', 'tab:olive'))


def scene(env) -> Dict[str, Any]:
  """The layout of a safety-gymnasium episode: `{label: [(x, y, radius), ...]}` for hazards,
  vases, pillars, gremlins and buttons, and `goal` (x, y, radius) if the task has one; {}
  for other simulators. safety-gymnasium draws a new layout at every reset."""
  task = _safety_gym_task(env)
  out: Dict[str, Any] = {}
  for attribute, label, _ in _SCENE_GROUPS:
    group = getattr(task, attribute, None)
    positions = getattr(group, 'pos', None) if getattr(group, 'num', 0) else None
    if positions is not None:
      size = float(np.max(np.atleast_1d(getattr(group, 'size', 0.1))))
      out[label] = [(float(p[0]), float(p[1]), size) for p in np.atleast_2d(positions)]
  goal = _goal(task)
  if goal is not None:
    out['goal'] = goal
  return out


def _safety_gym_task(env):
  return getattr(getattr(getattr(env, 'env', None), 'unwrapped', None), 'task', None)


def _goal(task) -> Optional[Tuple[float, float, float]]:
  goal = getattr(task, 'goal', None)
  if goal is None or getattr(goal, 'pos', None) is None:
    return None
  return float(goal.pos[0]), float(goal.pos[1]), float(goal.size)


def play(policy, env, seed: int, max_steps: Optional[int] = None,
         frame=None) -> Dict[str, Any]:
  """One episode on a single `SafeEnv`: rewards, costs, positions (if readable), frames,
  and for safety-gymnasium its layout (`scene`) and every goal it set (`goals`)."""
  obs, _ = env.reset(seed=seed)
  policy.reset(1)
  rewards, costs, positions, frames = [], [], [], []
  start = agent_position(env)
  if start is not None:
    positions.append(start)
  layout = scene(env)
  goals = [layout['goal']] if 'goal' in layout else []
  task = _safety_gym_task(env)
  done, t = False, 0
  while not done and (max_steps is None or t < max_steps):
    action = policy.act(obs[None])
    obs, reward, cost, terminated, truncated, _ = env.step(action[0])
    policy.observe(action, np.array([reward]), np.array([cost]))
    rewards.append(reward)
    costs.append(cost)
    position = agent_position(env)
    if position is not None and start is not None:
      positions.append(position)
    if frame is not None:
      frames.append(frame())
    if goals:  # Goal tasks move the goal each time it is reached.
      goal = _goal(task)
      if goal is not None and goal[:2] != goals[-1][:2]:
        goals.append(goal)
    done, t = terminated or truncated, t + 1
  return {'rewards': np.asarray(rewards), 'costs': np.asarray(costs),
          'positions': np.asarray(positions) if start is not None else None, 'frames': frames,
          'scene': layout, 'goals': goals}


def task_geometry(env) -> Dict[str, float]:
  """Circle radius and x-limits of bullet Circle tasks (drawn on the trajectory plot)."""
  task = getattr(getattr(getattr(env, 'env', None), 'unwrapped', None), 'task', None)
  geometry = {}
  radius = getattr(getattr(task, 'circle', None), 'radius', None)
  if radius is not None:
    geometry['radius'] = float(radius)
  if getattr(task, 'x_lim', None) is not None:
    geometry['x_lim'] = float(task.x_lim)
  return geometry


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
  for _, label, colour in _SCENE_GROUPS:
    for x, y, r in episode['scene'].get(label, ()):
      ax.add_patch(plt.Circle((x, y), r, color=colour, alpha=0.35, label=label))
  for k, (x, y, r) in enumerate(episode.get('goals', ())):
    ax.add_patch(plt.Circle((x, y), r, color='tab:green', alpha=0.35, label='goal'))
    ax.annotate(str(k + 1), (x, y), ha='center', va='center', fontsize=7)


def make_frame_env(task: str, seed: int, options: Dict[str, Any]):
  """`(env, frame_fn)` of an env that renders RGB frames off-screen; raises if it cannot."""
  spec = envs.get_spec(task)
  if spec.simulator == 'bullet_safety_gym':
    env = envs.make(task, seed=seed, **options)
    return env, lambda: np.asarray(env.env.unwrapped.render(mode='rgb_array'))
  if spec.simulator == 'safety_gymnasium':
    env = envs.make(task, seed=seed, render_mode='rgb_array', **options)
    return env, lambda: np.asarray(env.env.render())
  raise RuntimeError(f'off-screen rendering of {spec.simulator} tasks is not supported here')


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
  tmp = path + '.tmp.gif'
  imageio.mimsave(tmp, frames, duration=0.05, loop=0)
  os.replace(tmp, path)
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
  options = env_options(config.max_episode_steps)
  env = envs.make_vec(task, min(config.num_envs, config.episodes), seed=config.seed, **options)
  try:
    if (env.obs_dim, env.act_dim) != (info['obs_dim'], info['act_dim']):
      raise ValueError(f'{config.ckpt} was trained on {info["task"] or "an unknown task"!r} with '
                       f'obs_dim={info["obs_dim"]}, act_dim={info["act_dim"]}; task {task!r} '
                       f'has obs_dim={env.obs_dim}, act_dim={env.act_dim}')
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
      geometry = task_geometry(single)
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


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  d, kw = Config(), {'flag_values': fv}
  flags.DEFINE_string('ckpt', d.ckpt, 'Run or checkpoint directory.', **kw)
  flags.DEFINE_string('task', d.task, 'Task (default: the checkpoint\'s).', **kw)
  flags.DEFINE_integer('episodes', d.episodes, 'Evaluation episodes.', **kw)
  flags.DEFINE_integer('num_envs', d.num_envs, 'Env copies stepped together.', **kw)
  flags.DEFINE_float('target_return', None, 'DT return-to-go (default: saved).', **kw)
  flags.DEFINE_bool('plot', d.plot, 'Save a trajectory plot.', **kw)
  flags.DEFINE_integer('plot_episodes', d.plot_episodes, 'Episodes in the plot.', **kw)
  flags.DEFINE_bool('video', d.video, 'Save a GIF of one episode.', **kw)
  flags.DEFINE_integer('video_steps', d.video_steps, 'Most frames in the video.', **kw)
  flags.DEFINE_string('export', d.export, 'Export the MLP policy to this .npz.', **kw)
  flags.DEFINE_string('out_dir', d.out_dir, 'Output directory.', **kw)
  flags.DEFINE_integer('seed', d.seed, 'Seed of the first episode.', **kw)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint at INFO.
  config = config_from_flags(Config, flags.FLAGS)
  if not config.ckpt:
    raise app.UsageError('--ckpt is required')
  run(config)


if __name__ == '__main__':
  define_flags()
  app.run(main)
