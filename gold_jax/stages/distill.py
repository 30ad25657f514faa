r"""GOLD online distillation: a frozen offline guide jump-starts an IQL or CVPO student.

The guide (Decision Transformer or BC, from `gold_jax.stages.train_guide`) acts for the first h
steps of every episode, the 2x256 MLP student for the rest; h follows a curriculum down to 0
(or, `--schedule.kind=prob`, each step is the guide's with a decaying probability). Every
transition goes to one replay buffer the student learns from. `--guide=none` trains the
student from scratch (the baselines).

  python -m experiments.distill --task=Car-Circle --guide=dt --guide_ckpt=runs/guide_dt \
      --backbone=iql --workdir=runs/gold_car_circle

The run directory holds config.json, checkpoints/ (learner state, replay buffer, schedule,
counters and RNG states), metrics.csv, TensorBoard events and plots. Rerunning the same command
resumes from the last checkpoint; Ctrl-C saves a checkpoint and exits.
"""

import copy
import dataclasses
import os
import signal
import threading
from typing import Any, Dict, Optional, Tuple

from absl import logging
import jax
import tqdm

from gold_jax import configs, envs, jsrl, launch
from gold_jax.agents import cvpo, iql, lagrange
from gold_jax.data.replay import ReplayBuffer
from gold_jax import protocol
from gold_jax.evaluation import evaluate, evaluate_set
from gold_jax import logger as logger_lib
from gold_jax import plots
from gold_jax.loop import GuidedLoop, LoopCheckpoints, LoopConfig
from gold_jax.policies import MLPPolicy, init_state, load_guide, read_guide_metadata

GUIDES = ('dt', 'bc', 'none')
BACKBONES = {'iql': iql, 'cvpo': cvpo}


@dataclasses.dataclass(frozen=True)
class Config:
  task: str = 'Car-Circle'  # Task name of `gold_jax.envs` (or a simulator id).
  guide: str = 'dt'  # 'dt', 'bc' or 'none' (the student learns from scratch).
  guide_ckpt: str = ''  # Guide checkpoint directory written by experiments/train_guide.py.
  guide_target_return: Optional[float] = None  # DT return-to-go; None: the checkpoint's.
  backbone: str = 'iql'  # Student learner: 'iql' (reward shaping r - lambda c) or 'cvpo'.
  cvpo_preset: str = 'released'  # CVPO's hyperparameters (cvpo.PRESETS): 'released' (the
                                 # authors' code, what the tables use) or 'fsrl' (FSRL's CVPO).
  iql_actor: str = 'awr'  # IQL actor loss: 'awr' (IQL paper) or 'sac' (GOLD released code).
  schedule: jsrl.ScheduleConfig = jsrl.ScheduleConfig()  # The guide's curriculum.
  total_steps: int = 300_000  # Env steps of online training.
  num_envs: int = 1  # Env copies stepped together.
  # Collection and updates (the pipeline option steps two halves of the envs in turn, the
  # guide computing for one while the other steps; even num_envs). utd None: the CVPO
  # preset's rate where it has one (fsrl: 0.2), else 1.0.
  loop: LoopConfig = LoopConfig(utd=None)
  replay_capacity: int = 1_000_000  # Replay buffer size (capped at total_steps).
  eval_every: int = 10_000  # Env steps between evaluations (and checkpoints).
  eval_episodes: int = 10  # Episodes per curve point: the first ones of the evaluation set.
  final_eval_episodes: int = 10  # Episodes of the final evaluation (the reported numbers);
                                 # recorded-scenario tasks play every held-out scenario once.
  # IQL: lambda of the shaped reward r - lambda c: fixed (the paper), or adapted against
  # kappa from the student's own episode costs ('lagrange', 'pid').
  multiplier: lagrange.Config = lagrange.Config(rule='fixed', value=1.0)
  hidden_dims: Tuple[int, ...] = (256, 256)  # Student MLP (2x256; smaller only in tests).
  max_episode_steps: Optional[int] = None  # Episode length override (tests); None: the task's.
  env_options: Optional[Dict[str, Any]] = None  # Extra `envs.make` options (e.g. MetaDrive's
                                                # data_dir and scenario range); None: none.
  eval_env_options: Optional[Dict[str, Any]] = None  # Options of the evaluation env (held-out
                                                     # scenarios); None: env_options. On
                                                     # recorded-scenario tasks every scenario of
                                                     # this env is one final-evaluation episode.
  seed: int = 0  # Seeds the learner, the envs, the buffer sampling and the mixing.
  eval_protocol: int = protocol.VERSION  # Evaluation protocol (gold_jax.protocol) of the run.
  progress: bool = True  # Show a tqdm progress bar.

  def __post_init__(self):  # Dicts (config.json, presets) become the nested configs.
    configs.coerce(self)


# Fields that may change when a run is resumed.
_RESUMABLE = ('total_steps', 'progress', 'eval_episodes', 'final_eval_episodes')


def validate(config: Config) -> None:
  """Raises ValueError for any flag that cannot work, before anything is built."""
  if config.guide not in GUIDES:
    raise ValueError(f'--guide must be one of {GUIDES}, got {config.guide!r}')
  if config.backbone not in BACKBONES:
    raise ValueError(f'--backbone must be one of {tuple(BACKBONES)}, got {config.backbone!r}')
  if config.guide != 'none' and not config.guide_ckpt:
    raise ValueError(f'--guide={config.guide} needs --guide_ckpt')
  config.schedule.validate()
  if config.eval_protocol != protocol.VERSION:
    raise ValueError(f'this code scores runs under evaluation protocol {protocol.VERSION}, '
                     f'not {config.eval_protocol}')
  if config.cvpo_preset not in cvpo.PRESETS:
    raise ValueError(f'--cvpo_preset must be one of {tuple(cvpo.PRESETS)}, got '
                     f'{config.cvpo_preset!r}')
  loop_config(config).validate(config.num_envs)
  for name in ('total_steps', 'num_envs', 'replay_capacity', 'eval_every', 'eval_episodes',
               'final_eval_episodes'):
    if getattr(config, name) <= 0:
      raise ValueError(f'--{name} must be positive, got {getattr(config, name)}')
  lagrange.validate(config.multiplier)


def learner_config(config: Config, spec):
  """The student's learner config; the task gives the cost limit and the episode length."""
  hidden = tuple(config.hidden_dims)
  if config.backbone == 'iql':
    return iql.Config(hidden_dims=hidden, actor_loss=config.iql_actor,
                      multiplier=config.multiplier, cost_limit=spec.cost_threshold)
  return cvpo.preset(config.cvpo_preset, hidden_dims=hidden,
                     cost_limit_start=spec.cost_threshold, cost_limit_end=spec.cost_threshold,
                     episode_len=spec.max_episode_steps)


def loop_config(config: Config) -> LoopConfig:
  """`config.loop` with its utd resolved: the CVPO preset's `updates_per_step` where utd is
  None and the preset has one, else 1.0."""
  utd = config.loop.utd
  if utd is None:
    rate = (cvpo.PRESETS[config.cvpo_preset].updates_per_step if config.backbone == 'cvpo'
            else None)
    utd = 1.0 if rate is None else rate
  return dataclasses.replace(config.loop, utd=utd)


def init_learner(config: Config, spec, obs_dim: int, act_dim: int):
  """The student's initial learner state."""
  return init_state(BACKBONES[config.backbone], jax.random.PRNGKey(config.seed), obs_dim,
                    act_dim, learner_config(config, spec))


def make_schedule(config: Config, cost_threshold: float, episode_len: int):
  """The guide's schedule (`jsrl.make_schedule`), None without a guide."""
  if config.guide == 'none':
    return None
  return jsrl.make_schedule(config.schedule, cost_threshold, episode_len)


def check_guide(config: Config, obs_dim: int, act_dim: int) -> None:
  """The guide checkpoint must fit the task's observation and action sizes."""
  meta = read_guide_metadata(config.guide_ckpt)
  if meta['algo'] != config.guide:
    raise ValueError(f'--guide={config.guide} but {config.guide_ckpt} holds a '
                     f'{meta["algo"]!r} guide')
  if (int(meta['obs_dim']), int(meta['act_dim'])) != (obs_dim, act_dim):
    raise ValueError(
        f'guide checkpoint {config.guide_ckpt} was trained on {meta["task"]!r} with obs_dim='
        f'{meta["obs_dim"]}, act_dim={meta["act_dim"]}, but task {config.task!r} has '
        f'obs_dim={obs_dim}, act_dim={act_dim}')
  if meta['task'] != config.task:
    logging.warning('guide trained on %r is used on %r', meta['task'], config.task)


class StopOnSigint:
  """Within the block, Ctrl-C (SIGINT) asks the loop to stop at its next step; twice aborts.

  The loop then stops where its state is consistent, so the checkpoint that follows holds no
  half-made update. Outside the main thread (where handlers cannot be set) it does nothing.
  """

  def __init__(self):
    self.requested = False  # Set by the first Ctrl-C.
    self.forced = False  # Set by a second one, which raises KeyboardInterrupt.
    self._previous = None

  def _handle(self, signum, frame):
    del signum, frame
    if self.requested:
      self.forced = True
      raise KeyboardInterrupt
    self.requested = True

  def __enter__(self) -> 'StopOnSigint':
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGINT, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGINT, self._previous)


def plot_run(workdir: str, name: str, cost_threshold: float) -> None:
  """Writes plots/reward_cost.png from metrics.csv (evaluation reward and cost)."""
  try:
    columns = logger_lib.read_csv(os.path.join(workdir, 'metrics.csv'))
    curves = [[logger_lib.metric_series(columns, f'evaluation/{key}_mean')]
              for key in ('reward', 'cost')]
    plots.reward_cost_curves({name: curves[0]}, {name: curves[1]},
                             os.path.join(workdir, 'plots', 'reward_cost.png'),
                             cost_threshold=cost_threshold, title=name)
  except Exception as e:  # pylint: disable=broad-except  # A plot never stops a run.
    logging.warning('plotting failed: %s', e)


def train_and_evaluate(config: Config, workdir: str) -> Dict[str, float]:
  """Trains (or resumes) a GOLD run in `workdir`; returns the last evaluation's metrics."""
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  env_options = dict(config.env_options or {})
  if config.max_episode_steps is not None:
    env_options['max_episode_steps'] = config.max_episode_steps
  # MetaDrive runs one simulator per process: the evaluation copies (and the training copies
  # when there are several) get processes of their own.
  separate = envs.get_spec(config.task).simulator == envs.registry.METADRIVE
  eval_options = dict(env_options if config.eval_env_options is None else
                      config.eval_env_options)
  if config.max_episode_steps is not None:
    eval_options['max_episode_steps'] = config.max_episode_steps
  env = envs.make_vec(config.task, config.num_envs, seed=config.seed,
                      asynchronous=separate and config.num_envs > 1, **env_options)
  eval_env = envs.make_vec(config.task, min(max(config.eval_episodes,
                                                config.final_eval_episodes), 10),
                           seed=config.seed, asynchronous=separate, **eval_options)
  spec = env.spec  # With the episode length override, if any.
  try:
    if config.guide != 'none':
      check_guide(config, env.obs_dim, env.act_dim)
    launch.check_same_config(workdir, config, may_differ=_RESUMABLE)
    eval_set = protocol.for_task(spec.name, spec.max_episode_steps, config.seed,
                                 config.final_eval_episodes, eval_options)
    return _train(config, workdir, spec, env, eval_env, eval_set)
  finally:
    env.close()
    eval_env.close()


def _train(config: Config, workdir: str, spec, env, eval_env,
           eval_set: protocol.EvalSet) -> Dict[str, Any]:
  module = BACKBONES[config.backbone]
  state = init_learner(config, spec, env.obs_dim, env.act_dim)
  guide = None
  if config.guide != 'none':
    guide = load_guide(config.guide_ckpt, config.guide_target_return)
  student = MLPPolicy(module, state, deterministic=False, seed=config.seed + 1)
  policy = jsrl.JSRLPolicy(guide, student, seed=config.seed + 2)
  schedule = make_schedule(config, spec.cost_threshold, spec.max_episode_steps)
  buffer = ReplayBuffer(env.obs_dim, env.act_dim, min(config.replay_capacity, config.total_steps))
  runner = GuidedLoop(env, policy, student, module, state, buffer, schedule, loop_config(config),
                      seed=config.seed)
  run = LoopCheckpoints(workdir)
  resume_step = run.latest_step()
  logger = logger_lib.MetricLogger(workdir, resume_step=resume_step)
  eval_guide = copy.copy(guide)  # Its own acting context: evaluation never disturbs training.
  # Curve points play the first `eval_episodes` of the evaluation set; the `auto` curriculum
  # decides on validation episodes of its own (gold_jax.protocol).
  curve_set = eval_set if eval_set.scenarios else protocol.eval_set(
      spec.name, spec.max_episode_steps, config.seed, config.eval_episodes)

  def evaluate_now() -> Dict[str, float]:
    metrics = evaluate_set(MLPPolicy(module, runner.state, deterministic=True), eval_env,
                           curve_set, config.eval_episodes)
    if isinstance(schedule, jsrl.AutoCurriculum):
      mixed_policy = jsrl.JSRLPolicy(eval_guide, MLPPolicy(module, runner.state),
                                     schedule.horizon)
      mixed = evaluate(mixed_policy, eval_env, config.eval_episodes,
                       protocol.validation_seed(config.seed), prefix='validation/mixed_')
      schedule.on_eval(mixed['validation/mixed_reward_mean'],
                       mixed['validation/mixed_cost_mean'])
      schedule.apply(policy)
      metrics.update(mixed)
    return metrics

  last: Dict[str, float] = {}
  interrupted = False
  progress = tqdm.tqdm(total=config.total_steps, disable=not config.progress, unit='step',
                       dynamic_ncols=True)
  stop = StopOnSigint()
  try:
    with stop:
      if resume_step is not None:
        extra = run.restore(runner)
        last = extra.get('last_eval', {})
        logging.info('resumed %s at env step %d', workdir, runner.step)
      else:
        metrics = {}
        if guide is not None:
          metrics.update(evaluate_set(eval_guide, eval_env, curve_set, config.eval_episodes,
                                      prefix='guide/'))
          if isinstance(schedule, jsrl.AutoCurriculum):
            reference = evaluate(eval_guide, eval_env, config.eval_episodes,
                                 protocol.validation_seed(config.seed), prefix='validation/guide_')
            metrics.update(reference)
            schedule.set_reference(reference['validation/guide_reward_mean'])
        metrics.update(runner.pop_metrics())
        last = evaluate_now()
        metrics.update(last)
        logger.write(0, metrics)
        run.save(runner, {'last_eval': last})
      progress.update(runner.step)
      while runner.step < config.total_steps and not stop.requested:
        target = min((runner.step // config.eval_every + 1) * config.eval_every,
                     config.total_steps)
        runner.run(target, progress, should_stop=lambda: stop.requested)
        if stop.requested:
          break
        metrics = runner.pop_metrics()  # The schedule as it was during these steps.
        last = evaluate_now()
        metrics.update(last)
        progress.set_postfix(reward=f'{last["evaluation/reward_mean"]:.1f}',
                             cost=f'{last["evaluation/cost_mean"]:.1f}')
        logger.write(runner.step, metrics)
        run.save(runner, {'last_eval': last})
    interrupted = stop.requested
  except KeyboardInterrupt:
    if stop.forced:
      raise  # A second Ctrl-C: leave at once; the last checkpoint stays as it was.
    interrupted = True  # Raised by the program itself, between steps.
  finally:
    progress.close()
    runner.close()
  try:
    if interrupted and run.latest_step() != runner.step:
      logging.warning('interrupted at env step %d: saving a checkpoint', runner.step)
      run.save(runner, {'last_eval': last})
  finally:
    logger.close()
    run.close()
  plot_run(workdir, f'{config.guide}-{config.backbone}', spec.cost_threshold)
  summary = {**last, 'training/env_steps': float(runner.step), 'interrupted': float(interrupted)}
  if not interrupted:
    summary.update(final_evaluation(MLPPolicy(module, runner.state, deterministic=True),
                                    eval_env, eval_set))
  return summary


def final_evaluation(policy, eval_env, eval_set: protocol.EvalSet) -> Dict[str, Any]:
  """The reported numbers: the whole evaluation set, as `final/...` metrics plus the set's
  `eval_set` id and `final/episodes`."""
  metrics = evaluate_set(policy, eval_env, eval_set, prefix='final/')
  return {**metrics, 'final/episodes': eval_set.episodes, 'eval_set': eval_set.id}
