r"""The GOLD demo (`make demo`): expert -> demonstrations -> DT guide -> GOLD vs IQL -> table.

  python -m experiments.demo --workdir=runs/demo            # about 15 minutes on 2 CPU cores
  python -m experiments.demo --workdir=/tmp/d --scale=smoke  # tiny, under a minute

On Car-Circle (bullet-safety-gym) it
1. trains a SAC-Lagrangian expert and records demonstrations (`gold_jax.stages.collect`),
2. trains a Decision Transformer guide on them (`gold_jax.stages.train_guide`),
3. distils the guide into a 2x256 IQL student by Jump-Start RL, GOLD(DT-IQL), and trains IQL
   from scratch with the same env-step budget (`gold_jax.stages.distill`),
4. evaluates expert, DT, IQL and GOLD on the same episode seeds and prints a table of reward and
   cost (mean ± std), writes `learning_curves.png` (evaluation reward and cost vs env steps of
   GOLD and IQL, expert and DT as reference lines),
5. exports the GOLD student (`gold_jax.export`) and compares its decision latency with the DT's.

Each stage writes into its own directory under --workdir (expert/, dt/, gold/, iql/) and is
skipped when its results are there, so an interrupted demo continues where it stopped.
Outputs: results.md, results.json, timings.json, learning_curves.png, student.npz.
"""

import dataclasses
import os
import resource
import time
from typing import Any, Dict

import jax
import numpy as np

from gold_jax.stages import collect
from gold_jax.stages import distill
from gold_jax.stages import evaluate as evaluate_lib
from gold_jax.stages import train_guide
from gold_jax import envs
from gold_jax import files
from gold_jax import launch
from gold_jax import presets
from gold_jax import protocol
from gold_jax import export as export_lib
from gold_jax import logger as logger_lib
from gold_jax import plots
from gold_jax.checkpoints import checkpoint_dir
from gold_jax.launch import load_json, save_json
from gold_jax.policies import MLPPolicy, load_guide, load_policy

SCALES = ('default', 'smoke')
# The demo's scales are budget presets of `gold_jax.presets` (default: the laptop preset).
PRESETS = {'default': 'laptop', 'smoke': 'smoke'}


@dataclasses.dataclass(frozen=True)
class Config:
  task: str = 'Car-Circle'  # Task (bullet Car-Circle: fast to simulate).
  scale: str = 'default'  # 'default' (about 15 min on 2 cores) or 'smoke' (tests, < 1 min).
  seed: int = 0  # Seeds every stage.
  progress: bool = True  # Show tqdm progress bars.


def _usage() -> Dict[str, float]:
  """CPU seconds used so far by this process and its finished children."""
  own = resource.getrusage(resource.RUSAGE_SELF)
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _Timer:
  """Wall-clock and CPU seconds per stage (the CPU is often shared: both are reported)."""

  def __init__(self, path: str):
    self.path = path
    self.stages = load_json(path) or {}

  def run(self, name: str, fn, *args):
    wall, cpu = time.perf_counter(), _usage()
    result = fn(*args)
    self.stages[name] = {'wall_s': time.perf_counter() - wall, 'cpu_s': _usage() - cpu}
    save_json(self.path, self.stages)
    return result


def _stage(timer: _Timer, workdir: str, name: str, fn, *args) -> Dict[str, Any]:
  """Runs (and times) `fn` unless `workdir/name/summary.json` exists; returns the summary."""
  path = os.path.join(workdir, name, 'summary.json')
  summary = load_json(path)
  if summary is None:
    summary = timer.run(name, fn, *args)
    if summary.get('interrupted'):
      raise KeyboardInterrupt(f'{name} was interrupted; rerun the demo to continue')
    save_json(path, summary)
  return summary


def budgets(config: Config) -> Dict[str, Dict[str, Any]]:
  """The stage Config overrides of the demo's scale (`gold_jax.presets.stages`)."""
  return presets.stages(PRESETS[config.scale], config.task)


def stage_configs(config: Config, workdir: str):
  """The configs of collect, train_guide and the two distill runs for `config.scale`."""
  b = budgets(config)
  common = dict(task=config.task, seed=config.seed, progress=config.progress)
  expert = collect.Config(**{**b['collect'], **common})
  guide = train_guide.Config(
      algo='dt', dataset=collect.dataset_path(os.path.join(workdir, 'expert')),
      **{**b['guide'], **common})
  students = {}
  for name, guide_name in (('gold', 'dt'), ('iql', 'none')):
    students[name] = distill.Config(
        guide=guide_name, backbone='iql',
        guide_ckpt=checkpoint_dir(os.path.join(workdir, 'dt'), of_run=True)
        if guide_name != 'none' else '',
        **{**b['distill'], **common})
  return expert, guide, students


def _final_evaluations(config: Config, workdir: str) -> Dict[str, Dict[str, Any]]:
  """Every policy on the same `final_episodes` episode seeds."""
  b = budgets(config)['distill']
  length = b.get('max_episode_steps')
  out = {}
  for name in ('expert', 'dt', 'iql', 'gold'):
    ckpt = os.path.join(workdir, name)
    if name == 'expert':  # The expert collect kept (and demonstrated with), not its last state.
      ckpt = collect.best_expert_dir(ckpt)
    eval_config = evaluate_lib.Config(
        ckpt=ckpt, task=config.task, episodes=b['final_eval_episodes'],
        plot=name in ('gold', 'expert'), plot_episodes=2, max_episode_steps=length,
        seed=protocol.evaluation_seed(config.seed))
    out[name] = evaluate_lib.run(eval_config, os.path.join(workdir, name, 'evaluation'))
  return out


def _curve(workdir: str, key: str):
  columns = logger_lib.read_csv(os.path.join(workdir, 'metrics.csv'))
  return logger_lib.metric_series(columns, key)


def learning_curves(workdir: str, evaluations: Dict[str, Dict[str, Any]],
                    cost_threshold: float) -> str:
  """GOLD and IQL evaluation reward/cost vs env steps; expert and DT as flat references."""
  rewards, costs = {}, {}
  end = 0
  for name, label in (('gold', 'GOLD (DT-IQL)'), ('iql', 'IQL (scratch)')):
    run_dir = os.path.join(workdir, name)
    rewards[label] = [_curve(run_dir, 'evaluation/reward_mean')]
    costs[label] = [_curve(run_dir, 'evaluation/cost_mean')]
    end = max(end, int(rewards[label][0][0][-1]))
  for name, label in (('expert', 'expert (SAC-Lag)'), ('dt', 'DT guide')):
    steps = np.array([0, end])
    rewards[label] = [(steps, np.full(2, evaluations[name]['reward_mean']))]
    costs[label] = [(steps, np.full(2, evaluations[name]['cost_mean']))]
  return plots.reward_cost_curves(rewards, costs, os.path.join(workdir, 'learning_curves.png'),
                                  cost_threshold=cost_threshold,
                                  title='Car-Circle: GOLD vs IQL from scratch')


def latencies(workdir: str, task: str, seed: int) -> Dict[str, float]:
  """Exports the GOLD student; per-decision latency of numpy student, JAX student and DT."""
  _, info = load_policy(os.path.join(workdir, 'gold'))
  path = os.path.join(workdir, 'student.npz')
  export_lib.export_actor(info['state'], path, metadata={'task': task, 'algo': 'gold-dt-iql'})
  student = export_lib.NumpyPolicy.load(path)
  env = envs.make(task, seed=seed)
  obs, _ = env.reset(seed=seed)
  env.close()
  batch = obs[None]
  jax_student = MLPPolicy(info['module'], info['state'], deterministic=True)
  expected = jax_student.act(batch)
  guide = load_guide(checkpoint_dir(os.path.join(workdir, 'dt'), of_run=True))
  guide.reset(1)

  def dt_decision():
    action = guide.act(batch)
    guide.observe(action, np.zeros(1), np.zeros(1))

  return {
      'student_params': float(student.num_params()),
      'student_bytes': float(os.path.getsize(path)),
      'student_max_abs_error': float(np.max(np.abs(student(batch) - expected))),
      'student_numpy_ms': 1e3 * export_lib.latency(lambda: student(obs)),
      'student_jax_ms': 1e3 * export_lib.latency(lambda: jax_student.act(batch)),
      'dt_ms': 1e3 * export_lib.latency(dt_decision, repeats=100),
      'dt_params': float(sum(np.size(x) for x in jax.tree.leaves(guide.state.params))),
  }


def results_table(evaluations: Dict[str, Dict[str, Any]], timing: Dict[str, float],
                  kappa: float, episodes: int) -> str:
  """The markdown table printed at the end of the demo."""
  names = {'expert': 'expert (SAC-Lagrangian)', 'dt': 'DT guide',
           'iql': 'IQL from scratch', 'gold': 'GOLD (DT-IQL)'}
  params = {'dt': timing['dt_params'], 'gold': timing['student_params'],
            'iql': timing['student_params']}
  latency = {'dt': timing['dt_ms'], 'gold': timing['student_numpy_ms'],
             'iql': timing['student_numpy_ms']}
  lines = [f'| policy | reward | cost (κ = {kappa:g}) | parameters | ms / decision |',
           '|---|---|---|---|---|']
  for key, label in names.items():
    e = evaluations[key]
    p = f'{params[key]:,.0f}' if key in params else ''
    ms = f'{latency[key]:.3f}' if key in latency else ''
    lines.append(f'| {label} | {e["reward_mean"]:.1f} ± {e["reward_std"]:.1f} | '
                 f'{e["cost_mean"]:.1f} ± {e["cost_std"]:.1f} | {p} | {ms} |')
  lines.append('')
  lines.append(f'Mean ± std over {episodes} episodes with the same seeds for every policy. '
               'Student latency: the exported numpy MLP (student.npz) on one observation; '
               f'its JAX act takes {timing["student_jax_ms"]:.3f} ms, the DT '
               f'{timing["dt_ms"]:.3f} ms (act + observe of its rolling context).')
  return '\n'.join(lines)


def run(config: Config, workdir: str) -> Dict[str, Any]:
  """Runs (or continues) the demo in `workdir`; returns evaluations, latencies and timings."""
  if config.scale not in SCALES:
    raise ValueError(f'--scale must be one of {SCALES}, got {config.scale!r}')
  os.makedirs(workdir, exist_ok=True)
  launch.check_same_config(workdir, config, may_differ=('progress',))
  expert, guide, students = stage_configs(config, workdir)
  timer = _Timer(os.path.join(workdir, 'timings.json'))
  start = time.perf_counter()
  _stage(timer, workdir, 'expert', collect.run, expert, os.path.join(workdir, 'expert'))
  _stage(timer, workdir, 'dt', train_guide.run, guide, os.path.join(workdir, 'dt'))
  for name, student in students.items():
    _stage(timer, workdir, name, distill.train_and_evaluate, student, os.path.join(workdir, name))
  evaluations = timer.run('evaluation', _final_evaluations, config, workdir)
  timing = timer.run('export', latencies, workdir, config.task, config.seed)
  kappa = envs.get_spec(config.task).cost_threshold
  png = learning_curves(workdir, evaluations, kappa)
  table = results_table(evaluations, timing, kappa,
                        budgets(config)['distill']['final_eval_episodes'])
  total = time.perf_counter() - start
  stages = timer.stages
  timing_lines = ', '.join(f'{k} {v["wall_s"]:.0f}s' for k, v in stages.items())
  text = (f'# GOLD demo on {config.task} (scale {config.scale})\n\n{table}\n\n'
          f'Learning curves: {png}\nStage wall-clock (CPU) seconds: ' +
          ', '.join(f'{k} {v["wall_s"]:.0f} ({v["cpu_s"]:.0f})' for k, v in stages.items())
          + '\n')
  files.write_text(os.path.join(workdir, 'results.md'), text)
  result = {'evaluations': {k: {m: v[m] for m in ('reward_mean', 'reward_std', 'cost_mean',
                                                   'cost_std')}
                            for k, v in evaluations.items()},
            'latency': timing, 'timings': stages, 'learning_curves': png,
            'student': os.path.join(workdir, 'student.npz'), 'seconds': total}
  save_json(os.path.join(workdir, 'results.json'), result)
  print('\n' + text)
  print(f'stages: {timing_lines}; this call {total:.0f}s')
  return result
