r"""Trains an expert with SAC-Lagrangian and records its demonstrations.

  python -m experiments.collect --task=Car-Circle --expert_steps=100000 --episodes=50 \
      --workdir=runs/cc/expert

1. The expert (`gold_jax.agents.sac`) learns online: `--multiplier.rule=pid` (the default) or
   `lagrange` adapts the cost multiplier to its measured training-episode cost, aiming at
   `--multiplier.cost_target` times the budget kappa (from env step `--multiplier.start_step`);
   `--multiplier.rule=fixed` keeps lambda = `--multiplier.value` (reward shaping r - lambda c).
   The loop is `gold_jax.loop.GuidedLoop` with no guide, `loop.utd * loop.train_every`
   updates fused per `update_n` call.
   Every `--eval_every` env steps, and at the end, the expert plays `--eval_episodes` validation
   episodes (`gold_jax.protocol.validation_seed`). The kept expert (`best_expert/`) is the
   validated checkpoint of highest reward among those with validation cost <= kappa, or, when
   none is, the one of lowest cost. `--expert=scripted` skips training and plays the
   hand-written controller of `gold_jax.scripted` (Goal and Button tasks). The expert's reward
   and cost on `--final_episodes` evaluation episodes (`gold_jax.protocol.evaluation_seed`) go
   into summary.json (`expert_reward_mean`, `expert_cost_mean`, `expert_safe`); an expert
   above kappa there prints a WARNING.
2. The kept expert acts deterministically for `--episodes` episodes; a `--noise_fraction` of
   them are noisy (Gaussian action noise of `--noise_std`, or uniformly random actions) for
   robustness studies. They are written as a DSRL-layout dataset (`dataset.hdf5`) with a JSON
   sidecar (`dataset.json`: task, sizes, per-episode return, cost and noise flag).

The run directory holds config.json, checkpoints/ (expert state, replay buffer, loop state),
best_expert/ (the kept expert, with its validation figures), metrics.csv, dataset.hdf5,
dataset.json and summary.json. Rerunning the same command resumes the expert from its last
checkpoint (a finished expert is reused) and rewrites the dataset.
"""

import dataclasses
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from absl import logging
import jax
import numpy as np
import tqdm

from gold_jax import configs, envs
from gold_jax import errors
from gold_jax import export as export_lib
from gold_jax import episodes as episodes_lib
from gold_jax import jsrl
from gold_jax import protocol
from gold_jax import scripted
from gold_jax import logger as logger_lib
from gold_jax.agents import lagrange, sac
from gold_jax.data.replay import ReplayBuffer
from gold_jax.data.trajectories import TrajectoryDataset
from gold_jax.evaluation import evaluate, evaluate_set
from gold_jax.checkpoints import CheckpointManager
from gold_jax.launch import check_same_config, env_options, save_json
from gold_jax.loop import GuidedLoop, LoopCheckpoints, LoopConfig
from gold_jax.policies import MLPPolicy, uncommitted

NOISES = ('gaussian', 'random')
EXPERTS = ('sac', 'scripted')
DATASET_FORMATS = ('hdf5', 'npz')


@dataclasses.dataclass(frozen=True)
class Config:
  task: str = 'Car-Circle'  # Task name of `gold_jax.envs` (or a simulator id).
  expert_steps: int = 100_000  # Env steps of expert training.
  hidden_dims: Tuple[int, ...] = (256, 256)  # Expert actor and critic MLPs.
  loop: LoopConfig = LoopConfig(learning_starts=5_000)  # Batches, updates per env step.
  replay_capacity: int = 1_000_000  # Replay buffer size (capped at expert_steps).
  # lambda: PID Lagrangian (default), 'lagrange' (Adam ascent), both on the measured episode
  # cost and aiming at cost_target * kappa, or 'fixed' (= value: reward shaping r - lambda c).
  multiplier: lagrange.Config = lagrange.Config(rule='pid', value=0.0, cost_target=0.6,
                                                kp=0.1, ki=0.01, kd=0.05)
  cost_limit: Optional[float] = None  # Per-episode budget kappa; None: the task's.
  cost_twin: str = 'mean'  # SAC's cost twin in targets and actor: 'mean', or 'max' (pessimistic).
  num_envs: int = 1  # Env copies stepped together.
  log_every: int = 5_000  # Env steps between training-metric rows (and checkpoints).
  eval_every: int = 5_000  # Env steps between validations of the expert (0: only at the end).
  eval_episodes: int = 10  # Validation episodes per validation.
  final_episodes: int = protocol.MIN_FINAL_EPISODES  # Evaluation episodes of the kept expert.
  episodes: int = 50  # Demonstration episodes recorded with the kept expert.
  noise_fraction: float = 0.0  # Share of demonstration episodes played with noise.
  noise: str = 'gaussian'  # 'gaussian' (action + N(0, noise_std)) or 'random' (uniform actions).
  noise_std: float = 0.3  # Standard deviation of the Gaussian action noise.
  dataset_format: str = 'hdf5'  # 'hdf5' (DSRL layout) or 'npz'.
  max_episode_steps: Optional[int] = None  # Episode length override (tests); None: the task's.
  env_options: Optional[Dict[str, Any]] = None  # Extra `envs.make` options (e.g. MetaDrive's
                                                # data_dir and scenario range); None: none.
  eval_env_options: Optional[Dict[str, Any]] = None  # Options of the validation and evaluation
                                                     # env (held-out scenarios); None: env_options.
  expert_policy: str = ''  # An exported expert (a run's expert.npz): no training; the
                           # evaluation and demonstrations are played with it.
  expert: str = 'sac'  # 'sac' (SAC-Lagrangian, trained here) or 'scripted' (`gold_jax.scripted`:
                       # a hand-written controller, no training; Point-Goal only).
  seed: int = 0  # Seeds the expert, the envs and the noise.
  progress: bool = True  # Show tqdm progress bars.
  tensorboard: bool = True  # Also write TensorBoard events.

  def __post_init__(self):  # Dicts (config.json, presets) become the nested configs.
    configs.coerce(self)


# Fields that may change when a finished or interrupted expert is reused.
_RESUMABLE = ('episodes', 'noise_fraction', 'noise', 'noise_std', 'dataset_format',
                   'progress', 'tensorboard', 'eval_episodes', 'expert_steps', 'log_every',
                   'eval_every', 'final_episodes', 'expert_policy')


def validate(config: Config) -> None:
  """Raises ValueError for a flag that cannot work, before anything is built."""
  lagrange.validate(config.multiplier)
  if config.expert not in EXPERTS:
    raise ValueError(f'--expert must be one of {EXPERTS}, got {config.expert!r}')
  if config.expert == 'scripted':
    if config.expert_policy:
      raise ValueError('--expert=scripted plays the scripted controller; it takes no '
                       '--expert_policy')
    scripted.check_task(config.task)  # A task without a scripted expert fails here, by name.
  if config.noise not in NOISES:
    raise ValueError(f'--noise must be one of {NOISES}, got {config.noise!r}')
  if config.dataset_format not in DATASET_FORMATS:
    raise ValueError(f'--dataset_format must be one of {DATASET_FORMATS}, got '
                     f'{config.dataset_format!r}')
  if not 0.0 <= config.noise_fraction <= 1.0:
    raise ValueError(f'--noise_fraction must be in [0, 1], got {config.noise_fraction}')
  for name in ('expert_steps', 'episodes', 'num_envs', 'log_every', 'eval_episodes',
               'final_episodes', 'replay_capacity'):
    if getattr(config, name) <= 0:
      raise ValueError(f'--{name} must be positive, got {getattr(config, name)}')
  if config.noise_std < 0 or config.eval_every < 0:
    raise ValueError('--noise_std and --eval_every must be >= 0')
  config.loop.validate(config.num_envs)


# -- Expert -----------------------------------------------------------------------------------


def expert_config(config: Config, spec) -> sac.Config:
  """SAC-Lagrangian config of the expert; the task gives kappa and the episode length."""
  cost_limit = spec.cost_threshold if config.cost_limit is None else config.cost_limit
  return sac.Config(hidden_dims=tuple(config.hidden_dims), multiplier=config.multiplier,
                    cost_limit=float(cost_limit),
                    cost_twin=config.cost_twin)


def cost_budget(config: Config, spec) -> float:
  """kappa: `--cost_limit`, or the task's cost threshold."""
  return float(spec.cost_threshold if config.cost_limit is None else config.cost_limit)


def _rank(validation: Dict[str, float], kappa: float) -> Tuple[bool, float]:
  """Order of validated experts: safe ones (cost <= kappa) by reward, then the rest by -cost."""
  cost = validation['validation/cost_mean']
  return (cost <= kappa, validation['validation/reward_mean'] if cost <= kappa else -cost)


def best_expert_dir(workdir: str) -> str:
  """Where collect keeps the chosen expert (a checkpoint directory `evaluate` can load)."""
  return os.path.join(workdir, 'best_expert')


def train_expert(config: Config, workdir: str, env, eval_env) -> Tuple[sac.State, Dict[str, Any]]:
  """Trains (or resumes, or reuses) the SAC expert, validating it along the way.

  Returns the kept expert (see the module docstring) and its validation figures (with `step`).
  """
  spec = env.spec
  init = jax.jit(sac.init, static_argnums=(1, 2, 3))  # One compilation, not one per op.
  state = init(jax.random.PRNGKey(config.seed), env.obs_dim, env.act_dim,
               expert_config(config, spec))
  student = MLPPolicy(sac, state, deterministic=False, seed=config.seed + 1)
  policy = jsrl.JSRLPolicy(None, student, seed=config.seed + 2)
  buffer = ReplayBuffer(env.obs_dim, env.act_dim,
                        min(config.replay_capacity, config.expert_steps))
  runner = GuidedLoop(env, policy, student, sac, state, buffer, None,
                      config.loop, seed=config.seed)
  run = LoopCheckpoints(workdir)
  best = CheckpointManager(best_expert_dir(workdir), max_to_keep=1)
  kappa = cost_budget(config, spec)
  resume_step = run.latest_step()
  logger = logger_lib.MetricLogger(workdir, use_tensorboard=config.tensorboard,
                                   resume_step=resume_step)
  meta = {'algo': 'sac', 'role': 'expert', 'task': spec.name, 'obs_dim': env.obs_dim,
          'act_dim': env.act_dim}

  def validate_and_keep(metrics: Dict[str, float]) -> None:
    validation = evaluate(MLPPolicy(sac, runner.state), eval_env, config.eval_episodes,
                          seed=protocol.validation_seed(config.seed), prefix='validation/')
    metrics.update(validation)
    kept = best.latest_step()
    if kept == runner.step:  # Validated before an interruption.
      return
    if kept is None or _rank(validation, kappa) > _rank(
        best.read_metadata(kept)['extra']['validation'], kappa):
      best.save(runner.step, runner.state, extra={**meta, 'validation': validation})

  progress = tqdm.tqdm(total=config.expert_steps, desc='expert', unit='step',
                       disable=not config.progress, dynamic_ncols=True)
  try:
    if resume_step is not None:
      run.restore(runner)
      logging.info('expert: resumed %s at env step %d', workdir, runner.step)
    progress.update(min(runner.step, config.expert_steps))
    while runner.step < config.expert_steps:
      target = min([(runner.step // every + 1) * every
                    for every in (config.log_every, config.eval_every) if every]
                   + [config.expert_steps])
      runner.run(target, progress)
      metrics = runner.pop_metrics()
      if runner.step >= config.expert_steps or (
          config.eval_every and runner.step % config.eval_every == 0):
        validate_and_keep(metrics)
      if 'training/episode_return' in metrics:
        progress.set_postfix(ret=f'{metrics["training/episode_return"]:.1f}',
                             cost=f'{metrics["training/episode_cost"]:.1f}')
      logger.write(runner.step, metrics)
      run.save(runner, meta)
    if best.latest_step() is None:  # A run finished before experts were validated.
      validate_and_keep({})
    kept = best.latest_step()
    state = uncommitted(best.restore(runner.state, kept))
    validation = dict(best.read_metadata(kept)['extra']['validation'], step=kept)
  finally:
    progress.close()
    logger.close()
    run.close()
    best.close()
  return state, validation


def expert_path(workdir: str) -> str:
  """The kept expert's exported actor (`gold_jax.export`, tens of KB): commit it, and a later
  `--expert_policy` run re-records the same demonstrations without training."""
  return os.path.join(workdir, 'expert.npz')


def export_expert(state: sac.State, path: str, task: str, seed: int,
                  validation: Dict[str, Any]) -> str:
  """Writes the deterministic actor of `state` with its task, seed and validation figures."""
  return export_lib.export_actor(state, path, metadata={
      'task': task, 'seed': seed, 'algo': 'sac-lagrangian expert',
      'validation': {k: float(v) for k, v in validation.items()},
      'lambda': float(state.multiplier.value)})


def load_expert(path: str, env) -> Tuple[Callable[[np.ndarray], np.ndarray], Dict[str, Any]]:
  """(act, validation figures) of an exported expert, checked against `env`'s task."""
  if not os.path.isfile(path):
    raise errors.CheckpointError(f'{path}: no such exported expert',
                                 hint='--expert_policy takes the expert.npz of a collect run')
  try:
    policy = export_lib.NumpyPolicy.load(path)
  except Exception as e:  # A truncated or foreign file: zip, JSON or key errors.
    raise errors.CheckpointError(f'{path}: not a readable exported expert ({e})') from e
  task = policy.metadata.get('task')
  if task != env.spec.name or (policy.obs_dim, policy.act_dim) != (env.obs_dim, env.act_dim):
    raise errors.CheckpointError(
        f'{path}: an expert of {task} (obs {policy.obs_dim}, act {policy.act_dim}), not of '
        f'{env.spec.name} (obs {env.obs_dim}, act {env.act_dim})')
  validation = dict(policy.metadata.get('validation', {}))
  validation['lambda'] = policy.metadata.get('lambda')
  return policy, validation


# -- Demonstrations --------------------------------------------------------------------------


def rollout(act: Callable[[np.ndarray], np.ndarray], env, episodes: int, seed: int,
            noisy: Optional[np.ndarray] = None, noise: str = 'gaussian', noise_std: float = 0.3,
            progress: bool = False, desc: str = 'rollout') -> List[Dict[str, np.ndarray]]:
  """Plays `episodes` episodes on a vector env (`gold_jax.episodes.play`) and returns them as
  DSRL-key dicts; episode i resets with seed `seed + i`, whatever the number of copies.

  `act(obs (n, obs_dim)) -> (n, act_dim)` is the policy; in episodes where `noisy` is true the
  action gets Gaussian noise (`noise='gaussian'`) or is replaced by a uniform one ('random').
  """
  noisy = np.zeros(episodes, bool) if noisy is None else np.asarray(noisy, bool)
  rng = np.random.default_rng(seed)

  def perturb(action: np.ndarray, ids: np.ndarray) -> np.ndarray:
    rows = np.where(ids < episodes, noisy[np.minimum(ids, episodes - 1)], False)
    if not rows.any():
      return action
    if noise == 'gaussian':
      perturbed = action + noise_std * rng.standard_normal(action.shape)
    else:
      perturbed = rng.uniform(-1.0, 1.0, action.shape)
    return np.where(rows[:, None], np.clip(perturbed, -1, 1), action).astype(np.float32)

  played = episodes_lib.play(episodes_lib.ActionFunction(act), env, episodes, seed, record=True,
                             perturb=perturb, progress=progress, desc=desc)
  return played['episodes']


def noisy_episodes(episodes: int, fraction: float, seed: int) -> np.ndarray:
  """Which episodes are noisy: round(fraction * episodes) of them, chosen at random."""
  mask = np.zeros(episodes, bool)
  count = int(round(fraction * episodes))
  mask[np.random.default_rng(seed).permutation(episodes)[:count]] = True
  return mask


def dataset_path(workdir: str, dataset_format: str = 'hdf5') -> str:
  return os.path.join(workdir, f'dataset.{dataset_format}')


def record(config: Config, workdir: str, act: Callable[[np.ndarray], np.ndarray], env
           ) -> Dict[str, Any]:
  """Rolls out the expert `act` (deterministic) into the dataset; returns the dataset's sidecar
  metadata."""
  noisy = noisy_episodes(config.episodes, config.noise_fraction, config.seed + 7)
  start = time.perf_counter()
  episodes = rollout(act, env, config.episodes, seed=protocol.demonstration_seed(config.seed),
                     noisy=noisy,
                     noise=config.noise, noise_std=config.noise_std, progress=config.progress,
                     desc='demonstrations')
  elapsed = time.perf_counter() - start
  dataset = TrajectoryDataset.from_episodes(episodes, task=env.spec.name)
  path = dataset_path(workdir, config.dataset_format)
  dataset.to_file(path)
  returns, costs = dataset.episode_returns(), dataset.episode_costs()
  clean = ~noisy
  meta = {
      'task': env.spec.name, 'obs_dim': dataset.obs_dim, 'act_dim': dataset.act_dim,
      'path': os.path.basename(path), 'num_episodes': dataset.num_episodes,
      'num_transitions': dataset.num_transitions,
      'episode_returns': returns.tolist(), 'episode_costs': costs.tolist(),
      'episode_lengths': dataset.episode_lengths().tolist(), 'noisy': noisy.tolist(),
      'noise': config.noise if noisy.any() else None, 'noise_std': config.noise_std,
      'cost_threshold': env.spec.cost_threshold, 'rollout_seconds': elapsed,
  }
  if clean.any():
    meta.update(expert_reward_mean=float(returns[clean].mean()),
                expert_reward_std=float(returns[clean].std()),
                expert_cost_mean=float(costs[clean].mean()),
                expert_cost_std=float(costs[clean].std()))
  save_json(os.path.join(workdir, 'dataset.json'), meta)
  return meta


def run(config: Config, workdir: str) -> Dict[str, Any]:
  """Trains (or reuses) the expert, records its demonstrations; returns summary metrics."""
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  check_same_config(workdir, config, may_differ=_RESUMABLE)
  options = {**(config.env_options or {}), **env_options(config.max_episode_steps)}
  eval_options = {**(options if config.eval_env_options is None else config.eval_env_options),
                  **env_options(config.max_episode_steps)}
  # MetaDrive runs one simulator per process: its envs get processes of their own.
  separate = envs.get_spec(config.task).simulator == envs.registry.METADRIVE
  env = envs.make_vec(config.task, config.num_envs, seed=config.seed,
                      asynchronous=separate and config.num_envs > 1, **options)
  eval_env = envs.make_vec(config.task, min(config.eval_episodes, 5), seed=config.seed + 100,
                           asynchronous=separate, **eval_options)
  try:
    start = time.perf_counter()
    if config.expert == 'scripted':
      act, validation = scripted.policy(config.task), {}
    elif config.expert_policy:
      act, validation = load_expert(config.expert_policy, env)
    else:
      state, validation = train_expert(config, workdir, env, eval_env)
      act = lambda obs: np.asarray(sac.act(state, obs, jax.random.PRNGKey(0), deterministic=True))
      export_expert(state, expert_path(workdir), env.spec.name, config.seed, validation)
      validation = dict(validation)
      validation['lambda'] = float(state.multiplier.value)
    train_seconds = time.perf_counter() - start
    eval_set = protocol.for_task(env.spec.name, env.spec.max_episode_steps, config.seed,
                                 config.final_episodes, eval_options)
    final = evaluate_set(episodes_lib.ActionFunction(act), eval_env, eval_set, prefix='expert_')
    meta = record(config, workdir, act, eval_env)
  finally:
    env.close()
    eval_env.close()
  kappa = cost_budget(config, env.spec)
  summary = {
      'task': meta['task'], 'dataset': dataset_path(workdir, config.dataset_format),
      'expert_steps': config.expert_steps, 'expert_seconds': train_seconds,
      'expert_policy': ('scripted' if config.expert == 'scripted'
                        else config.expert_policy or expert_path(workdir)),
      'num_episodes': meta['num_episodes'], 'num_transitions': meta['num_transitions'],
      'lambda': validation.get('lambda'), 'cost_limit': kappa}
  # The demonstrations' own figures (clean episodes), then the kept expert's on the evaluation
  # episodes and on the validation episodes that chose it.
  summary.update({'demonstration_' + k[len('expert_'):]: v for k, v in meta.items()
                  if k.startswith('expert_')})
  summary.update(final, expert_eval_episodes=eval_set.episodes, eval_set=eval_set.id,
                 expert_safe=bool(final['expert_cost_mean'] <= kappa),
                 expert_checkpoint_step=int(validation.get('step', -1)),
                 expert_validation_reward_mean=validation.get('validation/reward_mean'),
                 expert_validation_cost_mean=validation.get('validation/cost_mean'),
                 expert_validation_episodes=config.eval_episodes)
  save_json(os.path.join(workdir, 'summary.json'), summary)
  print(f'expert on {meta["task"]} (env step {summary["expert_checkpoint_step"]}): reward '
        f'{final["expert_reward_mean"]:.2f} ± {final["expert_reward_std"]:.2f}, cost '
        f'{final["expert_cost_mean"]:.2f} ± {final["expert_cost_std"]:.2f} over '
        f'{eval_set.episodes} evaluation episodes (kappa {kappa:g}); dataset '
        f'{summary["dataset"]}')
  if not summary['expert_safe']:
    if config.expert == 'scripted':
      why = f'the scripted expert is safe on {", ".join(scripted.SAFE_TASKS)} only'
    else:
      why = (f'validation cost {validation.get("validation/cost_mean", float("nan")):.2f}; '
             'train longer or lower --multiplier.cost_target')
    message = (f'WARNING: the expert on {meta["task"]} is NOT SAFE: mean cost '
               f'{final["expert_cost_mean"]:.2f} > kappa {kappa:g} on the evaluation episodes '
               f'({why})')
    logging.warning(message)
    print(message)
  return summary
