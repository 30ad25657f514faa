r"""Trains an offline guide (Decision Transformer or behaviour cloning) on demonstrations.

  python -m experiments.train_guide --algo=dt --dataset=runs/cc/expert/dataset.hdf5 \
      --workdir=runs/cc/dt

The DT regresses actions from K-step windows (`gold_jax.data.segments`), BC from single
transitions; both make `--updates_per_call` updates per fused `update_n` call. The guide is
saved in `workdir/checkpoints` in the layout `gold_jax.policies.load_guide` reads (learner state
plus metadata: algo, task, obs_dim, act_dim, and for the DT the target return it is conditioned
on, by default the `--target_quantile` quantile of the dataset's episode returns), then
evaluated in the environment. A dataset collected on another task than `--task` is refused.
Rerunning the same command resumes from the last checkpoint.

With several local devices (GPUs, TPU cores, or CPU devices from `GOLD_JAX_CPU_DEVICES`, see
`gold_jax.runtime`) the DT trains data-parallel: each batch is split over the devices and the
learner state replicated (`gold_jax.parallel`); `--nodata_parallel` keeps one device.
"""

import dataclasses
import os
import time
from typing import Any, Dict, Optional, Tuple

from absl import logging
import jax
import numpy as np
import tqdm

from gold_jax import envs
from gold_jax import logger as logger_lib
from gold_jax import parallel
from gold_jax.agents import bc, dt
from gold_jax.agents.common import check_finite
from gold_jax.checkpoints import CheckpointManager, checkpoint_dir
from gold_jax.launch import check_same_config, env_options, save_json
from gold_jax.data import segments
from gold_jax.data.trajectories import TrajectoryDataset
from gold_jax.errors import DatasetError
from gold_jax import protocol
from gold_jax.evaluation import evaluate, evaluate_set
from gold_jax.networks.gpt import DROPOUT_IMPLS
from gold_jax.networks.precision import MATMUL_DTYPES
from gold_jax.policies import load_guide, uncommitted

ALGOS = ('dt', 'bc')


@dataclasses.dataclass(frozen=True)
class Config:
  algo: str = 'dt'  # 'dt' (Decision Transformer) or 'bc' (behaviour cloning).
  dataset: str = ''  # Demonstration file (.hdf5 / .npz, DSRL layout).
  task: str = ''  # Task to evaluate on; '' = the dataset's task. Must match the dataset's.
  steps: int = 20_000  # Gradient updates.
  updates_per_call: int = 100  # Updates fused into one `update_n` call.
  batch_size: Optional[int] = None  # Windows (DT) or transitions (BC) per update; None: learner's.
  learning_rate: Optional[float] = None  # None: the learner's default.
  hidden_dims: Tuple[int, ...] = (256, 256)  # BC: policy MLP widths.
  embed_dim: int = 128  # DT: token width.
  num_layers: int = 3  # DT: transformer blocks.
  num_heads: int = 1  # DT: attention heads.
  context_len: int = 20  # DT: K, steps per window.
  dropout_rate: float = 0.1  # DT: dropout while training.
  warmup_steps: int = 2_000  # DT: linear learning-rate warm-up (capped at steps // 2).
  return_scale: float = 10.0  # DT: returns-to-go are divided by this.
  use_cost_token: bool = False  # DT: also condition on the cost-to-go.
  matmul_dtype: str = 'float32'  # DT: 'bfloat16' multiplies bf16-rounded inputs, float32 sums.
  dropout_impl: str = 'hash'  # DT: token-dropout masks from a counter hash, or 'threefry'.
  target_return: Optional[float] = None  # DT: conditioning return; None: a dataset quantile.
  target_quantile: float = 0.9  # DT: quantile of the episode returns used as target_return.
  target_cost: Optional[float] = None  # DT cost-to-go at t=0 (cost token); None: the task's kappa.
  eval_episodes: int = 10  # Final evaluation episodes (gold_jax.protocol; 0: none).
  eval_every: int = 0  # Updates between evaluations during training (0: only at the end).
  log_every: int = 1_000  # Updates between metric rows.
  checkpoint_every: int = 5_000  # Updates between checkpoints.
  max_episode_steps: Optional[int] = None  # Episode length override (tests); None: the task's.
  env_options: Optional[Dict[str, Any]] = None  # Extra `envs.make` options (e.g. MetaDrive's
                                                # data_dir and scenario range); None: none.
  eval_env_options: Optional[Dict[str, Any]] = None  # Options of the evaluation env (held-out
                                                     # scenarios); None: env_options.
  seed: int = 0  # Seeds the learner, the sampling and the evaluation.
  progress: bool = True  # Show a tqdm progress bar.
  tensorboard: bool = True  # Also write TensorBoard events.
  data_parallel: bool = True  # DT: split each batch over all local devices when there are several.


_RESUMABLE = ('steps', 'eval_episodes', 'eval_every', 'log_every', 'checkpoint_every',
              'progress', 'tensorboard', 'target_return', 'target_quantile', 'target_cost',
              'data_parallel')


def validate(config: Config) -> None:
  if config.algo not in ALGOS:
    raise ValueError(f'--algo must be one of {ALGOS}, got {config.algo!r}')
  if not config.dataset:
    raise ValueError('--dataset is required')
  for name in ('steps', 'updates_per_call', 'log_every', 'checkpoint_every', 'context_len'):
    if getattr(config, name) <= 0:
      raise ValueError(f'--{name} must be positive, got {getattr(config, name)}')
  if config.eval_episodes < 0 or config.eval_every < 0:
    raise ValueError('--eval_episodes and --eval_every must be >= 0')
  if not 0.0 <= config.target_quantile <= 1.0:
    raise ValueError(f'--target_quantile must be in [0, 1], got {config.target_quantile}')
  if config.batch_size is not None and config.batch_size <= 0:
    raise ValueError(f'--batch_size must be positive, got {config.batch_size}')
  if config.matmul_dtype not in MATMUL_DTYPES:
    raise ValueError(f'--matmul_dtype must be one of {MATMUL_DTYPES}, got {config.matmul_dtype!r}')
  if config.dropout_impl not in DROPOUT_IMPLS:
    raise ValueError(f'--dropout_impl must be one of {DROPOUT_IMPLS}, got {config.dropout_impl!r}')


def learner_config(config: Config, max_timestep: int):
  """The DT or BC learner config; `max_timestep` (`max_timestep_of`: the longest episode of
  the data and the envs) sizes the DT timestep table."""
  if config.algo == 'bc':
    kwargs = dict(hidden_dims=tuple(config.hidden_dims))
    if config.batch_size:
      kwargs['batch_size'] = config.batch_size
    if config.learning_rate:
      kwargs['learning_rate'] = config.learning_rate
    return bc.Config(**kwargs)
  kwargs = dict(embed_dim=config.embed_dim, num_layers=config.num_layers,
                num_heads=config.num_heads, mlp_dim=4 * config.embed_dim,
                dropout_rate=config.dropout_rate, context_len=config.context_len,
                max_timestep=int(max_timestep), use_cost_token=config.use_cost_token,
                warmup_steps=max(1, min(config.warmup_steps, config.steps // 2)),
                return_scale=config.return_scale, matmul_dtype=config.matmul_dtype,
                dropout_impl=config.dropout_impl)
  if config.batch_size:
    kwargs['batch_size'] = config.batch_size
  if config.learning_rate:
    kwargs['learning_rate'] = config.learning_rate
  return dt.Config(**kwargs)


def max_timestep_of(dataset: TrajectoryDataset, *env_lengths: int) -> int:
  """Size of the DT's timestep table: the longest episode the guide is trained on or acts
  through (the demonstrations' and the envs' episode lengths), so that no timestep of, say, a
  200-step nuScenes scenario is clipped to the last entry of a 90-step WOMD table."""
  return max([int(dataset.episode_lengths().max()), *(int(n) for n in env_lengths)])


def target_return(config: Config, dataset: TrajectoryDataset) -> float:
  if config.target_return is not None:
    return float(config.target_return)
  return float(np.quantile(dataset.episode_returns(), config.target_quantile))


class _Trainer:
  """Fused updates of a DT or BC learner; batches depend only on the seed and the call index."""

  def __init__(self, config: Config, module, learner, dataset: TrajectoryDataset):
    self.config, self.module, self.dataset = config, module, dataset
    self.key = jax.random.PRNGKey(config.seed + 1)
    if module is dt:
      self.data = segments.make_segment_data(dataset, learner.context_len, learner.return_scale,
                                             learner.cost_scale)

  def batches(self, call: int, state):
    k = self.config.updates_per_call
    if self.module is dt:
      return segments.sample_segments(self.data, jax.random.fold_in(self.key, call),
                                      state.config.batch_size, num_batches=k)
    rng = np.random.default_rng([self.config.seed, call])
    return self.dataset.sample_n(rng, k, state.config.batch_size)


def data_parallel_mesh(config: Config, module, batch_size: int) -> Optional[jax.sharding.Mesh]:
  """The mesh of all local devices when the DT trains data-parallel, else None."""
  devices = jax.local_devices()
  if module is not dt or not config.data_parallel or len(devices) < 2:
    return None
  if batch_size % len(devices):
    raise ValueError(f'--batch_size {batch_size} does not split over {len(devices)} devices: '
                     'pass a multiple, or --nodata_parallel')
  return parallel.make_mesh(devices)


def train(config: Config, workdir: str, module, dataset: TrajectoryDataset, eval_env,
          meta: Dict[str, Any]):
  """Trains (or resumes) the guide, checkpointing `state` with `meta`; returns the state."""
  obs_mean, obs_std = dataset.obs_stats()
  learner = learner_config(config, meta['max_timestep'])
  init = jax.jit(module.init, static_argnums=(1, 2, 3))  # One compilation, not one per op.
  state = init(jax.random.PRNGKey(config.seed), dataset.obs_dim, dataset.act_dim, learner,
               obs_mean, obs_std)
  manager = CheckpointManager(checkpoint_dir(workdir, of_run=True), max_to_keep=2)
  resume_step = manager.latest_intact_step(set_aside=True)
  if resume_step is not None:
    state = manager.restore(state, resume_step)
    logging.info('guide: resumed %s at update %d', workdir, int(state.step))
  logger = logger_lib.MetricLogger(workdir, use_tensorboard=config.tensorboard,
                                   resume_step=resume_step)
  trainer = _Trainer(config, module, learner, dataset)
  update_n, place = module.update_n, lambda batches: batches
  mesh = data_parallel_mesh(config, module, learner.batch_size)
  if mesh is not None:
    logging.info('guide: data-parallel over %d devices', mesh.size)
    update_n = dt.make_sharded_update(mesh)
    state = parallel.replicate(state, mesh)
    place = lambda batches: parallel.shard_batch(batches, mesh, batch_axis=1)
  k = config.updates_per_call
  step = int(state.step)
  sums, count, window_start = {}, 0, time.perf_counter()
  progress = tqdm.tqdm(total=config.steps, initial=min(step, config.steps), desc=config.algo,
                       unit='update', disable=not config.progress, dynamic_ncols=True)
  try:
    while step < config.steps:
      state, metrics = update_n(state, place(trainer.batches(step // k, state)))
      step += k
      progress.update(k)
      metrics = jax.device_get(metrics)
      check_finite(metrics, step)
      for name, value in metrics.items():
        sums[name] = sums.get(name, 0.0) + float(value)
      count += 1
      done = step >= config.steps
      if step % config.log_every < k or done:
        row = {name: total / count for name, total in sums.items()}
        row['training/updates_per_sec'] = count * k / (time.perf_counter() - window_start)
        if config.eval_every and (step % config.eval_every < k) and not done:
          row.update(evaluate_guide(module, uncommitted(state), meta, eval_env, config))
        progress.set_postfix(loss=f'{row.get("loss/action", float("nan")):.4f}')
        logger.write(step, row)
        sums, count, window_start = {}, 0, time.perf_counter()
      if step % config.checkpoint_every < k or done:
        manager.save(step, state, extra=meta)
  finally:
    progress.close()
    logger.close()
    manager.close()
  return state if mesh is None else uncommitted(state)  # On one device again, for acting.


def guide_policy(module, state, meta: Dict[str, Any]):
  """The acting policy of a trained guide state (the same one `load_guide` rebuilds)."""
  from gold_jax.policies import DTPolicy, MLPPolicy  # pylint: disable=g-import-not-at-top
  if module is dt:
    return DTPolicy(state, meta['target_return'], meta.get('target_cost', 0.0))
  return MLPPolicy(bc, state, deterministic=True)


def evaluate_guide(module, state, meta, eval_env, config: Config) -> Dict[str, float]:
  """A curve point: the first `eval_episodes` episodes of the evaluation set (protocol)."""
  return evaluate(guide_policy(module, state, meta), eval_env, max(config.eval_episodes, 1),
                  seed=protocol.evaluation_seed(config.seed))


def run(config: Config, workdir: str) -> Dict[str, Any]:
  """Trains, checkpoints and evaluates the guide; returns a summary (also summary.json)."""
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  dataset = TrajectoryDataset.load(config.dataset)
  task = config.task or dataset.task
  if not task:
    raise DatasetError(f'{config.dataset} records no task', hint='pass --task=<the task it was '
                       'collected on>')
  options = {**(config.env_options or {}), **env_options(config.max_episode_steps)}
  env = envs.make(task, seed=config.seed, **options)
  try:
    dataset.check_compatible(task, env.obs_dim, env.act_dim)
    env_length = int(env.spec.max_episode_steps or 0)  # E.g. a corpus's longest scenario.
  finally:
    env.close()
  check_same_config(workdir, config, may_differ=_RESUMABLE)
  module = dt if config.algo == 'dt' else bc
  spec = envs.get_spec(task)
  max_timestep = max_timestep_of(dataset, env_length)
  meta = {'algo': config.algo, 'task': spec.name, 'obs_dim': dataset.obs_dim,
          'act_dim': dataset.act_dim, 'dataset': os.path.abspath(config.dataset),
          'max_timestep': max_timestep}
  if config.algo == 'dt':
    meta['target_return'] = target_return(config, dataset)
    meta['target_cost'] = float(spec.cost_threshold if config.target_cost is None
                                else config.target_cost)
  eval_env = None
  eval_options = {**(options if config.eval_env_options is None else config.eval_env_options),
                  **env_options(config.max_episode_steps)}
  if config.eval_episodes or config.eval_every:
    eval_env = envs.make_vec(task, min(max(config.eval_episodes, 1), 10), seed=config.seed,
                             **eval_options)
  try:
    start = time.perf_counter()
    state = train(config, workdir, module, dataset, eval_env, meta)
    seconds = time.perf_counter() - start
    summary = {'algo': config.algo, 'task': spec.name, 'updates': int(state.step),
               'train_seconds': seconds, 'num_params': dt.num_params(state.params),
               'checkpoint': checkpoint_dir(workdir, of_run=True)}
    if config.algo == 'dt':
      summary['target_return'] = meta['target_return']
    if config.eval_episodes:
      guide = load_guide(workdir)  # The round trip distillation will use.
      length = int(eval_options.get('max_episode_steps', spec.max_episode_steps or 0))
      eval_set = protocol.for_task(spec.name, length, config.seed, config.eval_episodes,
                                   eval_options)
      metrics = evaluate_set(guide, eval_env, eval_set)
      summary.update(metrics, eval_set=eval_set.id)
      summary['evaluation/episodes'] = eval_set.episodes
      with logger_lib.MetricLogger(workdir, use_tensorboard=False) as logger:
        logger.write(int(state.step), metrics)
      print(f'{config.algo} guide on {spec.name}: reward {metrics["evaluation/reward_mean"]:.2f}'
            f' ± {metrics["evaluation/reward_std"]:.2f}, cost '
            f'{metrics["evaluation/cost_mean"]:.2f} ± {metrics["evaluation/cost_std"]:.2f} '
            f'over {eval_set.episodes} episodes'
            + (f' (target return {meta["target_return"]:.1f})' if config.algo == 'dt' else ''))
  finally:
    if eval_env is not None:
      eval_env.close()
  save_json(os.path.join(workdir, 'summary.json'), summary)
  return summary
