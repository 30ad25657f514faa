r"""Trains an expert with SAC-Lagrangian and records its demonstrations.

  python -m experiments.collect --task=Car-Circle --expert_steps=100000 --episodes=50 \
      --workdir=runs/cc/expert

1. The expert (`gold_jax.agents.sac`) learns online: `--expert=sac_lag` learns the cost
   multiplier against the task's cost budget kappa, `--expert=sac_shaped` keeps lambda =
   `--cost_coef` fixed (reward shaping r - lambda c). The loop is `gold_jax.loop.GuidedLoop`
   with no guide, `utd * train_every` updates fused per `update_n` call.
2. The final expert acts deterministically for `--episodes` episodes; a `--noise_fraction` of
   them are noisy (Gaussian action noise of `--noise_std`, or uniformly random actions) for
   robustness studies. They are written as a DSRL-layout dataset (`dataset.hdf5`) with a JSON
   sidecar (`dataset.json`: task, sizes, per-episode return, cost and noise flag).

The run directory holds config.json, checkpoints/ (expert state, replay buffer, loop state),
metrics.csv, dataset.hdf5, dataset.json and summary.json. Rerunning the same command resumes
the expert from its last checkpoint (a finished expert is reused) and rewrites the dataset.
"""

import dataclasses
import json
import os
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np
import tqdm

from gold_jax import envs
from gold_jax import jsrl
from gold_jax import logger as logger_lib
from gold_jax.agents import sac
from gold_jax.data.replay import ReplayBuffer
from gold_jax.data.trajectories import TrajectoryDataset
from gold_jax.evaluation import evaluate
from gold_jax.loop import GuidedLoop, LoopCheckpoints, LoopConfig
from gold_jax.policies import MLPPolicy

EXPERTS = ('sac_lag', 'sac_shaped')
NOISES = ('gaussian', 'random')
DATASET_FORMATS = ('hdf5', 'npz')


@dataclasses.dataclass(frozen=True)
class Config:
  task: str = 'Car-Circle'  # Task name of `gold_jax.envs` (or a simulator id).
  expert: str = 'sac_lag'  # 'sac_lag' (learned lambda vs kappa) or 'sac_shaped' (fixed lambda).
  expert_steps: int = 100_000  # Env steps of expert training.
  hidden_dims: Tuple[int, ...] = (256, 256)  # Expert actor and critic MLPs.
  batch_size: int = 256  # Transitions per update.
  utd: float = 1.0  # Updates per env step.
  train_every: int = 50  # Env steps between fused `update_n` calls (utd * train_every updates).
  learning_starts: int = 5_000  # Env steps before the first update.
  replay_capacity: int = 1_000_000  # Replay buffer size (capped at expert_steps).
  cost_coef: float = 0.0  # sac_shaped: the fixed lambda; sac_lag: the initial lambda.
  cost_limit: Optional[float] = None  # sac_lag: per-episode budget; None: the task's kappa.
  lambda_method: str = 'lagrange'  # sac_lag: lambda rule, 'lagrange' (Adam ascent) or 'pid'.
  lambda_lr: float = 3e-4  # sac_lag: Adam step size of lambda ('lagrange' rule).
  num_envs: int = 1  # Env copies stepped together.
  log_every: int = 5_000  # Env steps between training-metric rows (and checkpoints).
  eval_every: int = 0  # Env steps between evaluations of the expert (0: none during training).
  eval_episodes: int = 5  # Episodes per evaluation.
  episodes: int = 50  # Demonstration episodes recorded with the final expert.
  noise_fraction: float = 0.0  # Share of demonstration episodes played with noise.
  noise: str = 'gaussian'  # 'gaussian' (action + N(0, noise_std)) or 'random' (uniform actions).
  noise_std: float = 0.3  # Standard deviation of the Gaussian action noise.
  dataset_format: str = 'hdf5'  # 'hdf5' (DSRL layout) or 'npz'.
  max_episode_steps: Optional[int] = None  # Episode length override (tests); None: the task's.
  seed: int = 0  # Seeds the expert, the envs and the noise.
  progress: bool = True  # Show tqdm progress bars.
  tensorboard: bool = True  # Also write TensorBoard events.


# Fields that may change when a finished or interrupted expert is reused.
_RESUMABLE = ('episodes', 'noise_fraction', 'noise', 'noise_std', 'dataset_format',
                   'progress', 'tensorboard', 'eval_episodes', 'expert_steps', 'log_every',
                   'eval_every')


def validate(config: Config) -> None:
  """Raises ValueError for a flag that cannot work, before anything is built."""
  if config.expert not in EXPERTS:
    raise ValueError(f'--expert must be one of {EXPERTS}, got {config.expert!r}')
  if config.noise not in NOISES:
    raise ValueError(f'--noise must be one of {NOISES}, got {config.noise!r}')
  if config.dataset_format not in DATASET_FORMATS:
    raise ValueError(f'--dataset_format must be one of {DATASET_FORMATS}, got '
                     f'{config.dataset_format!r}')
  if not 0.0 <= config.noise_fraction <= 1.0:
    raise ValueError(f'--noise_fraction must be in [0, 1], got {config.noise_fraction}')
  for name in ('expert_steps', 'episodes', 'num_envs', 'log_every', 'eval_episodes',
               'replay_capacity'):
    if getattr(config, name) <= 0:
      raise ValueError(f'--{name} must be positive, got {getattr(config, name)}')
  if config.noise_std < 0 or config.cost_coef < 0 or config.eval_every < 0:
    raise ValueError('--noise_std, --cost_coef and --eval_every must be >= 0')
  LoopConfig(config.utd, config.train_every, config.batch_size,
             config.learning_starts).validate(config.num_envs)


# -- Small helpers shared by the launchers -------------------------------------------------


def save_json(path: str, value: Any) -> None:
  """Writes `value` as indented JSON, atomically (temporary file, then rename)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix='.json')
  try:
    with os.fdopen(fd, 'w') as f:
      json.dump(value, f, indent=2)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def load_json(path: str) -> Optional[Any]:
  """The JSON in `path`, or None when the file does not exist."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def config_dict(config) -> Dict[str, Any]:
  """A config dataclass as a JSON-normalised dict (tuples become lists)."""
  return json.loads(json.dumps(dataclasses.asdict(config)))


def check_same_config(workdir: str, config, may_differ=()) -> None:
  """Writes workdir/config.json; refuses a workdir holding a run of a different config."""
  path = os.path.join(workdir, 'config.json')
  current, saved = config_dict(config), load_json(path)
  if saved is not None:
    differ = sorted(k for k in set(saved) | set(current)
                    if k not in may_differ and saved.get(k) != current.get(k))
    if differ:
      raise ValueError(f'{workdir} holds a run with a different config ('
                       + ', '.join(f'{k}: {saved.get(k)!r} -> {current.get(k)!r}'
                                   for k in differ) + '); use another --workdir')
  save_json(path, current)


def mean_std(values) -> str:
  values = np.asarray(values, np.float64)
  return f'{values.mean():.2f} ± {values.std():.2f}'


def env_options(max_episode_steps: Optional[int]) -> Dict[str, Any]:
  return {} if max_episode_steps is None else {'max_episode_steps': int(max_episode_steps)}


# -- Expert -----------------------------------------------------------------------------------


def expert_config(config: Config, spec) -> sac.Config:
  """SAC-Lagrangian config of the expert; the task gives kappa and the episode length."""
  cost_limit = spec.cost_threshold if config.cost_limit is None else config.cost_limit
  return sac.Config(hidden_dims=tuple(config.hidden_dims), lagrangian=config.expert == 'sac_lag',
                    cost_coef=config.cost_coef, cost_limit=float(cost_limit),
                    episode_len=int(spec.max_episode_steps),
                    lambda_method=config.lambda_method, lambda_lr=config.lambda_lr)


def train_expert(config: Config, workdir: str, env, eval_env) -> sac.State:
  """Trains (or resumes, or reuses) the SAC expert; returns its final state."""
  spec = env.spec
  init = jax.jit(sac.init, static_argnums=(1, 2, 3))  # One compilation, not one per op.
  state = init(jax.random.PRNGKey(config.seed), env.obs_dim, env.act_dim,
               expert_config(config, spec))
  student = MLPPolicy(sac, state, deterministic=False, seed=config.seed + 1)
  policy = jsrl.JSRLPolicy(None, student, seed=config.seed + 2)
  buffer = ReplayBuffer(env.obs_dim, env.act_dim,
                        min(config.replay_capacity, config.expert_steps))
  runner = GuidedLoop(env, policy, student, sac, state, buffer, None,
                      LoopConfig(config.utd, config.train_every, config.batch_size,
                                 config.learning_starts), seed=config.seed)
  run = LoopCheckpoints(workdir)
  resume_step = run.latest_step()
  logger = logger_lib.MetricLogger(workdir, use_tensorboard=config.tensorboard,
                                   resume_step=resume_step)
  meta = {'algo': 'sac', 'role': 'expert', 'task': spec.name, 'obs_dim': env.obs_dim,
          'act_dim': env.act_dim}
  progress = tqdm.tqdm(total=config.expert_steps, desc='expert', unit='step',
                       disable=not config.progress, dynamic_ncols=True)
  try:
    if resume_step is not None:
      run.restore(runner)
      logging.info('expert: resumed %s at env step %d', workdir, runner.step)
    progress.update(min(runner.step, config.expert_steps))
    while runner.step < config.expert_steps:
      target = min((runner.step // config.log_every + 1) * config.log_every,
                   config.expert_steps)
      previous = runner.step
      runner.run(target, progress)
      metrics = runner.pop_metrics()
      if config.eval_every and (runner.step // config.eval_every > previous // config.eval_every
                                or runner.step >= config.expert_steps):
        metrics.update(evaluate(MLPPolicy(sac, runner.state), eval_env, config.eval_episodes,
                                seed=1_000_000 + config.seed))
      if 'training/episode_return' in metrics:
        progress.set_postfix(ret=f'{metrics["training/episode_return"]:.1f}',
                             cost=f'{metrics["training/episode_cost"]:.1f}')
      logger.write(runner.step, metrics)
      run.save(runner, meta)
  finally:
    progress.close()
    logger.close()
    run.close()
  return runner.state


# -- Demonstrations --------------------------------------------------------------------------


def rollout(act: Callable[[np.ndarray], np.ndarray], env, episodes: int, seed: int,
            noisy: Optional[np.ndarray] = None, noise: str = 'gaussian', noise_std: float = 0.3,
            progress: bool = False, desc: str = 'rollout') -> List[Dict[str, np.ndarray]]:
  """Plays `episodes` episodes on a vector env and returns them as DSRL-key dicts.

  Episodes run in rounds of `env.num_envs`, round r resetting copy i with seed
  `seed + r * n + i`, so the episodes depend on the seed and not on the number of copies.
  `act(obs (n, obs_dim)) -> (n, act_dim)` is the policy; in episodes where `noisy` is true the
  action gets Gaussian noise (`noise='gaussian'`) or is replaced by a uniform one ('random').
  """
  n = env.num_envs
  noisy = np.zeros(episodes, bool) if noisy is None else np.asarray(noisy, bool)
  rng = np.random.default_rng(seed)
  out = []
  bar = tqdm.tqdm(total=episodes, desc=desc, unit='episode', disable=not progress,
                  dynamic_ncols=True)
  for start in range(0, episodes, n):
    count = min(n, episodes - start)
    obs, _ = env.reset(seed=seed + start)
    rows = {k: [[] for _ in range(n)] for k in
            ('observations', 'next_observations', 'actions', 'rewards', 'costs')}
    terminals, timeouts = np.zeros(n, bool), np.zeros(n, bool)
    round_noisy = np.zeros(n, bool)
    round_noisy[:count] = noisy[start:start + count]
    running = np.ones(n, bool)
    running[count:] = False
    while running.any():
      action = np.asarray(act(obs), np.float32)
      if round_noisy.any():
        if noise == 'gaussian':
          perturbed = action + noise_std * rng.standard_normal(action.shape)
        else:
          perturbed = rng.uniform(-1.0, 1.0, action.shape)
        action = np.where(round_noisy[:, None], np.clip(perturbed, -1, 1), action)
        action = action.astype(np.float32)
      next_obs, reward, cost, terminated, truncated, info = env.step(action)
      done = np.asarray(terminated, bool) | np.asarray(truncated, bool)
      final = next_obs
      if done.any():
        final = np.array(next_obs, copy=True)
        for i in np.flatnonzero(done):
          final[i] = info['final_observation'][i]
      for i in np.flatnonzero(running):
        rows['observations'][i].append(obs[i])
        rows['next_observations'][i].append(final[i])
        rows['actions'][i].append(action[i])
        rows['rewards'][i].append(reward[i])
        rows['costs'][i].append(cost[i])
        if done[i]:
          terminals[i], timeouts[i] = bool(terminated[i]), not bool(terminated[i])
          bar.update(1)
      running &= ~done
      obs = next_obs
    for i in range(count):
      steps = len(rows['rewards'][i])
      episode = {k: np.asarray(v[i], np.float32) for k, v in rows.items()}
      episode['terminals'] = np.zeros(steps, bool)
      episode['timeouts'] = np.zeros(steps, bool)
      episode['terminals'][-1], episode['timeouts'][-1] = terminals[i], timeouts[i]
      out.append(episode)
  bar.close()
  return out


def noisy_episodes(episodes: int, fraction: float, seed: int) -> np.ndarray:
  """Which episodes are noisy: round(fraction * episodes) of them, chosen at random."""
  mask = np.zeros(episodes, bool)
  count = int(round(fraction * episodes))
  mask[np.random.default_rng(seed).permutation(episodes)[:count]] = True
  return mask


def dataset_path(workdir: str, dataset_format: str = 'hdf5') -> str:
  return os.path.join(workdir, f'dataset.{dataset_format}')


def record(config: Config, workdir: str, state: sac.State, env) -> Dict[str, Any]:
  """Rolls out the expert into the dataset; returns the dataset's sidecar metadata."""
  act = lambda obs: np.asarray(sac.act(state, obs, jax.random.PRNGKey(0), deterministic=True))
  noisy = noisy_episodes(config.episodes, config.noise_fraction, config.seed + 7)
  start = time.perf_counter()
  episodes = rollout(act, env, config.episodes, seed=2_000_000 + config.seed, noisy=noisy,
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
  options = env_options(config.max_episode_steps)
  env = envs.make_vec(config.task, config.num_envs, seed=config.seed, **options)
  eval_env = envs.make_vec(config.task, min(config.eval_episodes, 5), seed=config.seed + 100,
                           **options)
  try:
    start = time.perf_counter()
    state = train_expert(config, workdir, env, eval_env)
    train_seconds = time.perf_counter() - start
    meta = record(config, workdir, state, eval_env)
  finally:
    env.close()
    eval_env.close()
  summary = {
      'task': meta['task'], 'dataset': dataset_path(workdir, config.dataset_format),
      'expert_steps': config.expert_steps, 'expert_seconds': train_seconds,
      'num_episodes': meta['num_episodes'], 'num_transitions': meta['num_transitions'],
      'lambda': float(state.multiplier.value)}
  summary.update({k: v for k, v in meta.items() if k.startswith('expert_')})
  save_json(os.path.join(workdir, 'summary.json'), summary)
  if 'expert_reward_mean' in meta:
    print(f'expert on {meta["task"]}: reward {meta["expert_reward_mean"]:.2f} ± '
          f'{meta["expert_reward_std"]:.2f}, cost {meta["expert_cost_mean"]:.2f} ± '
          f'{meta["expert_cost_std"]:.2f} over {int(np.sum(~np.asarray(meta["noisy"])))} '
          f'episodes (kappa {meta["cost_threshold"]:g}); dataset {summary["dataset"]}')
  return summary


# -- Command line ------------------------------------------------------------------------


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  d, kw = Config(), {'flag_values': fv}
  flags.DEFINE_string('task', d.task, 'Task name (gold_jax.envs).', **kw)
  flags.DEFINE_enum('expert', d.expert, EXPERTS,
                    'sac_lag: SAC-Lagrangian; sac_shaped: SAC on r - cost_coef * c.', **kw)
  flags.DEFINE_integer('expert_steps', d.expert_steps, 'Env steps of expert training.', **kw)
  flags.DEFINE_list('hidden_dims', [str(h) for h in d.hidden_dims], 'Expert MLP widths.', **kw)
  flags.DEFINE_integer('batch_size', d.batch_size, 'Transitions per update.', **kw)
  flags.DEFINE_float('utd', d.utd, 'Updates per env step.', **kw)
  flags.DEFINE_integer('train_every', d.train_every,
                       'Env steps between fused update_n calls.', **kw)
  flags.DEFINE_integer('learning_starts', d.learning_starts, 'Env steps before updates.', **kw)
  flags.DEFINE_integer('replay_capacity', d.replay_capacity, 'Replay buffer size.', **kw)
  flags.DEFINE_float('cost_coef', d.cost_coef, 'Fixed (sac_shaped) or initial lambda.', **kw)
  flags.DEFINE_float('cost_limit', None, 'sac_lag cost budget (default: the task\'s).', **kw)
  flags.DEFINE_enum('lambda_method', d.lambda_method, ('lagrange', 'pid'),
                    'sac_lag: update rule of lambda.', **kw)
  flags.DEFINE_float('lambda_lr', d.lambda_lr, 'sac_lag: step size of lambda.', **kw)
  flags.DEFINE_integer('num_envs', d.num_envs, 'Env copies stepped together.', **kw)
  flags.DEFINE_integer('log_every', d.log_every, 'Env steps between logs/checkpoints.', **kw)
  flags.DEFINE_integer('eval_every', d.eval_every, 'Env steps between evaluations.', **kw)
  flags.DEFINE_integer('eval_episodes', d.eval_episodes, 'Episodes per evaluation.', **kw)
  flags.DEFINE_integer('episodes', d.episodes, 'Demonstration episodes.', **kw)
  flags.DEFINE_float('noise_fraction', d.noise_fraction, 'Share of noisy episodes.', **kw)
  flags.DEFINE_enum('noise', d.noise, NOISES, 'Noise of the noisy episodes.', **kw)
  flags.DEFINE_float('noise_std', d.noise_std, 'Gaussian action-noise std.', **kw)
  flags.DEFINE_enum('dataset_format', d.dataset_format, DATASET_FORMATS, 'File format.', **kw)
  flags.DEFINE_integer('seed', d.seed, 'Random seed.', **kw)
  flags.DEFINE_bool('progress', d.progress, 'Show progress bars.', **kw)
  flags.DEFINE_bool('tensorboard', d.tensorboard, 'Write TensorBoard events.', **kw)
  flags.DEFINE_string('workdir', None, 'Run directory.', **kw)


def config_from_flags(config_cls, values, skip=()) -> Any:
  """Builds `config_cls` from parsed absl flags of the same names (lists become tuples)."""
  kwargs = {}
  for field in dataclasses.fields(config_cls):
    if field.name in skip or field.name not in values:
      continue
    value = values[field.name].value
    if isinstance(value, list):
      try:
        value = tuple(int(v) for v in value)
      except ValueError as e:
        raise ValueError(f'--{field.name} must be integers, got {value}') from e
    kwargs[field.name] = value
  return config_cls(**kwargs)


def make_main(parse_fn: Callable, run_fn: Callable) -> Callable:
  """The absl `main` of a launcher: `parse_fn(FLAGS)` -> validated config (ValueError on bad
  flags) -> `run_fn(config, workdir)`."""

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint at INFO.
    if not flags.FLAGS.workdir:
      raise app.UsageError('--workdir is required')
    try:
      config = parse_fn(flags.FLAGS)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
    run_fn(config, flags.FLAGS.workdir)

  return main


def validated_config(config_cls, validate_fn: Callable) -> Callable:
  """`parse_fn` of `make_main` for a launcher whose flags mirror `config_cls` field by field."""

  def parse(values):
    config = config_from_flags(config_cls, values)
    validate_fn(config)
    return config

  return parse


main = make_main(validated_config(Config, validate), run)


if __name__ == '__main__':
  define_flags()
  app.run(main)
