r"""Table I and Fig. 2 of the paper at any scale: seven methods x tasks x seeds.

  python -m experiments.table1 --tasks=Car-Circle,Point-Goal --seeds=3 --scale=laptop \
      --workdir=runs/table1 --workers=2

For every task and seed one expert dataset (`gold_jax.stages.collect`) and one guide of each kind
(`gold_jax.stages.train_guide`) are shared by the methods that need them:

  BC, DT                 the offline guides themselves, evaluated in the env
  IQL, CVPO              online from scratch (distill --guide=none)
  GOLD(BC-IQL)           distill --guide=bc --backbone=iql
  GOLD(DT-CVPO)          distill --guide=dt --backbone=cvpo
  GOLD(DT-IQL)           distill --guide=dt --backbone=iql

Runs go to `<workdir>/<task>/seed<k>/<stage>/` and write `result.json` when they finish, so a
rerun only does what is missing (and each stage resumes from its own checkpoints). A failed run
writes `error.txt`; the table is still produced from the finished runs, with the missing cells
marked and the failed runs named. Outputs: table1.md, table1.csv, curves_<task>.png,
latency.md, and a trajectory plot per Point/Car task. `--runs_csv` adds the committed per-run
rows of other sweeps, so one table spans tasks swept in different workdirs or sittings.

Runs execute in a local process pool (`--workers`) or, with `--executor=ray`, as Ray tasks on a
local Ray or a cluster (`--ray_address`), each with its resources and with the runs it waits
for as dependencies (`gold_jax.sweep`); this process alone writes the tables.
"""

import dataclasses
import json
import os
import time
import traceback
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging

from gold_jax import configs, envs, errors, files, paper, presets, protocol, results, sweep
from gold_jax.checkpoints import checkpoint_dir

SCALES = presets.SCALES
DISTILL_METHODS = {
    'IQL': ('none', 'iql'), 'CVPO': ('none', 'cvpo'), 'GOLD(BC-IQL)': ('bc', 'iql'),
    'GOLD(DT-CVPO)': ('dt', 'cvpo'), 'GOLD(DT-IQL)': ('dt', 'iql')}


@dataclasses.dataclass(frozen=True)
class Config:
  tasks: Tuple[str, ...] = ('Car-Circle', 'Point-Goal')  # Tasks (rows of the table).
  seeds: int = 3  # Seeds per task and method: first_seed, ..., first_seed + seeds - 1.
  first_seed: int = 0  # First seed (a job of a job array runs one seed).
  methods: Tuple[str, ...] = results.METHODS  # Columns of the table.
  scale: str = 'laptop'  # Budget preset (gold_jax.presets): smoke (tests), laptop (CPU,
                         # minutes), long (laptop with 200k online env steps), paper.
  workers: int = 1  # Runs in parallel processes (one JAX process per run).
  # Where runs execute (gold_jax.sweep.ExecutorConfig): 'local' pool or 'ray' tasks, with
  # the Ray cluster's address, each run's CPUs and GPU share, and retries of a dead worker.
  executor: str = 'local'  # 'local' (a process pool) or 'ray' (pip install -e .[ray]).
  ray_address: str = ''  # Ray cluster to join (auto, head:6379); '': a local Ray.
  cpus_per_run: float = 1.0  # Ray: CPUs per run.
  gpus_per_run: float = 0.0  # Ray: GPUs per run (0.25: a quarter of a GPU and its memory).
  max_retries: int = 3  # Ray: retries of a run whose worker died.
  report_only: bool = False  # Only write the table from the runs that finished.
  dt_cost_token: bool = False  # DT guides also condition on the cost-to-go (target: kappa).
  lambda_rule: str = 'fixed'  # IQL students' lambda: 'fixed' or adapted ('lagrange', 'pid').
  expert_policies: str = ''  # Exported experts (<task>_seed<k>.npz, as the report's experts/
                             # holds): the expert stage records with them instead of training.
  online_steps: int = 0  # Online env steps of each IQL, CVPO and GOLD run; 0: the scale's. A
                         # sweep rerun with more extends its finished runs from their last
                         # checkpoint (the curriculum keeps the scale's stage lengths).
  runs_csv: Tuple[str, ...] = ()  # runs.csv files of other sweeps (other sittings, workdirs or
                                  # machines) whose rows join the table for the cells this
                                  # workdir has not run; curves and latency come from its runs.


def _done(path: str) -> Optional[Dict[str, Any]]:
  result = os.path.join(path, 'result.json')
  if os.path.exists(result):
    with open(result) as f:
      return json.load(f)
  return None


def _finished(path: str, online_steps: int = 0) -> Optional[Dict[str, Any]]:
  """The run's result, unless there is none or it is an online run of fewer env steps than
  `online_steps` (one to extend)."""
  done = _done(path)
  if done is not None and online_steps and (done.get('env_steps') or online_steps) < online_steps:
    return None
  return done


def _finish(path: str, result: Dict[str, Any], started: float) -> Dict[str, Any]:
  """Writes `result.json` with the run's start (Unix time) and duration in seconds."""
  result = dict(result, started=started, seconds=time.time() - started)
  previous = _done(path)
  if previous is not None:  # An extended run: its run time before this extension.
    result['seconds_before'] = previous['seconds'] + previous.get('seconds_before', 0.0)
  os.makedirs(path, exist_ok=True)
  results.write_text(os.path.join(path, 'result.json'), json.dumps(result, indent=1))
  error = os.path.join(path, 'error.txt')
  if os.path.exists(error):
    os.remove(error)
  return result


def _job(stage: str, task: str, seed: int, scale: str, root: str, method: str = '',
         dt_cost_token: bool = False, lambda_rule: str = 'fixed', expert_policies: str = '',
         online_steps: int = 0) -> Dict:
  """One run in its own process; returns its result or {'error': ...}."""
  logging.set_verbosity(logging.WARNING)
  base = os.path.join(root, task, f'seed{seed}')
  path = os.path.join(base, stage)
  previous = _finished(path, online_steps)
  if previous is not None:
    return previous
  overrides = presets.stages(scale, task)
  started = time.time()
  try:
    if stage == 'expert':
      from gold_jax.stages import collect
      exported = expert_policy_file(expert_policies, task, seed) if expert_policies else ''
      config = collect.Config(task=task, seed=seed, **overrides['collect'],
                              **_scenario_options(task),
                              expert_policy=exported if os.path.exists(exported) else '')
      summary = collect.run(config, path)
      return _finish(path, {'method': 'expert', 'dataset': summary['dataset'],
                            'reward': summary.get('expert_reward_mean'),
                            'cost': summary.get('expert_cost_mean'),
                            'success': summary.get('expert_success_rate'),
                            'episodes': summary.get('expert_eval_episodes'),
                            'eval_set': summary.get('eval_set'),
                            'safe': summary.get('expert_safe')}, started)
    if stage in ('bc', 'dt'):
      from gold_jax.stages import train_guide
      dataset = _done(os.path.join(base, 'expert'))['dataset']
      guide_overrides = dict(overrides['guide'])
      if stage == 'dt' and dt_cost_token:
        guide_overrides['use_cost_token'] = True
      config = train_guide.Config(algo=stage, dataset=dataset, task=task, seed=seed,
                                  **guide_overrides, **_scenario_options(task))
      summary = train_guide.run(config, path)
      return _finish(path, _eval_result(summary, method or stage.upper(), 'evaluation/'),
                     started)
    from gold_jax.stages import distill
    guide, backbone = DISTILL_METHODS[method]
    ckpt = os.path.join(base, guide) if guide != 'none' else ''
    if guide != 'none':
      ckpt = checkpoint_dir(ckpt, of_run=True)
    run_overrides = dict(overrides['distill'])
    if backbone == 'cvpo':
      # FSRL's CVPO (0.2 updates per env step): the configuration of the published PyTorch
      # CVPO that stays within the budget on Car-Circle (docs/results/cvpo.md).
      run_overrides['cvpo_preset'] = 'fsrl'
    if backbone == 'iql':
      run_overrides = configs.merge(run_overrides, multiplier={'rule': lambda_rule})
    if online_steps:
      run_overrides['total_steps'] = online_steps
    config = distill.Config(task=task, seed=seed, guide=guide, guide_ckpt=ckpt,
                            backbone=backbone, **run_overrides, **_scenario_options(task))
    summary = distill.train_and_evaluate(config, path)
    if summary.get('interrupted'):
      raise KeyboardInterrupt
    return _finish(path, _eval_result(summary, method, 'final/'), started)
  except Exception as e:  # pylint: disable=broad-except  # One failed cell never stops a sweep.
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, 'error.txt'), 'w') as f:
      f.write(traceback.format_exc())
    return {'error': f'{type(e).__name__}: {e}'}


def _scenario_options(task: str) -> Dict[str, Any]:
  """Recorded-scenario tasks: train on the first 80% of the scenarios ($GOLD_WOMD_DIR), score
  on the held-out rest (`gold_jax.driving.split.index_split`); other tasks: no options."""
  if not protocol.is_recorded(task):
    return {}
  from gold_jax.driving import split
  from gold_jax.envs import metadrive as md
  data_dir = md.resolve_data_dir(None)
  train, test = split.index_split(len(md.scenario_files(data_dir)))
  return {'env_options': dict(train, data_dir=str(data_dir)),
          'eval_env_options': dict(test, data_dir=str(data_dir))}


def _eval_result(summary: Mapping[str, Any], method: str, prefix: str) -> Dict[str, Any]:
  """The per-run row of a guide (`evaluation/...`) or an online run's final evaluation
  (`final/...`): reward, cost, success, episodes and the evaluation set's id."""
  out = {'method': method, 'reward': summary[f'{prefix}reward_mean'],
         'cost': summary[f'{prefix}cost_mean'], 'episodes': summary.get(f'{prefix}episodes'),
         'eval_set': summary.get('eval_set'), 'env_steps': summary.get('training/env_steps')}
  if f'{prefix}success_rate' in summary:
    out['success'] = summary[f'{prefix}success_rate']
  return out


def expert_policy_file(directory: str, task: str, seed: int) -> str:
  """Where a sweep's report keeps the exported expert of (task, seed)."""
  return os.path.join(directory, f'{task}_seed{seed}.npz')


def export_experts(config: Config, workdir: str) -> List[str]:
  """Copies every finished expert's exported actor to `workdir/experts/` (tens of KB each:
  the files to commit, so a later sitting re-records the demonstrations with
  `--expert_policies` instead of retraining)."""
  copied = []
  for task in config.tasks:
    for seed in _seeds(config):
      source = os.path.join(workdir, task, f'seed{seed}', 'expert', 'expert.npz')
      if _done(os.path.dirname(source)) is None or not os.path.exists(source):
        continue
      target = expert_policy_file(os.path.join(workdir, 'experts'), task, seed)
      os.makedirs(os.path.dirname(target), exist_ok=True)
      with open(source, 'rb') as f:
        data = f.read()
      with files.atomic_open(target, 'wb') as f:
        f.write(data)
      copied.append(target)
  return copied


def _stage_of(method: str) -> str:
  return {'BC': 'bc', 'DT': 'dt'}.get(method, method.lower().replace('(', '_').replace(')', ''))


def _guide_methods(config: Config) -> Tuple[str, ...]:
  """The offline methods the sweep trains: those asked for, and the guides of the GOLD runs."""
  stages = {m.lower() for m in config.methods if m in results.OFFLINE}
  stages |= {DISTILL_METHODS[m][0] for m in config.methods if m in DISTILL_METHODS}
  return tuple(m for m in results.OFFLINE if m.lower() in stages)


def _plan(config: Config, workdir: str) -> List[Tuple[str, Tuple, Tuple[str, ...]]]:
  """The sweep's runs as (name, `_job` arguments, names of the runs it waits for), experts
  first: per task and seed, expert -> its guides -> the online runs they guide (IQL and CVPO
  from scratch wait for nothing). A run's name is its directory under `workdir`."""
  pairs = [(t, s) for t in config.tasks for s in _seeds(config)]
  guides = [_stage_of(m) for m in _guide_methods(config)]
  online = [m for m in config.methods if m in DISTILL_METHODS]
  plan = [(f'{t}/seed{s}/expert', ('expert', t, s, config.scale, workdir, '', False, 'fixed',
                                    os.path.abspath(config.expert_policies)
                                    if config.expert_policies else ''), ())
          for t, s in pairs]
  plan += [(f'{t}/seed{s}/{g}', (g, t, s, config.scale, workdir, '', config.dt_cost_token),
            (f'{t}/seed{s}/expert',)) for t, s in pairs for g in guides]
  for t, s in pairs:
    for m in online:
      guide = DISTILL_METHODS[m][0]
      plan.append((f'{t}/seed{s}/{_stage_of(m)}',
                   (_stage_of(m), t, s, config.scale, workdir, m, config.dt_cost_token,
                    config.lambda_rule, '', config.online_steps),
                   (f'{t}/seed{s}/{guide}',) if guide != 'none' else ()))
  return plan


def _run_all(plan: Sequence[Tuple[str, Tuple, Tuple[str, ...]]], executor: sweep.Executor,
             workdir: str, online_steps: int = 0) -> Dict[str, Dict]:
  """Runs `_job(*args)` for each unfinished run of `plan` on `executor`, each after the runs
  it waits for; returns every run's result by name. Finished runs (`result.json`) are not
  submitted again, unless they are online runs of fewer than `online_steps`; a run whose
  worker died for good gets an `error.txt` here."""
  out, handles = {}, {}
  for name, args, after in plan:
    done = _finished(os.path.join(workdir, name), online_steps)
    if done is not None:
      out[name] = done
      continue
    handles[name] = executor.submit(_job, args, [handles[a] for a in after if a in handles],
                                    name=name)
  for name, result in zip(handles, executor.gather(list(handles.values()))):
    out[name] = result
    error = os.path.join(workdir, name, 'error.txt')
    if 'error' in result and not os.path.exists(error):
      os.makedirs(os.path.dirname(error), exist_ok=True)
      results.write_text(error, result['error'] + '\n')
  return out


def run(config: Config, workdir: str) -> Dict[str, Any]:
  """Runs what is missing of the sweep, then writes the table, curves and latency report."""
  for task in config.tasks:
    envs.get_spec(task)  # Unknown task names fail before any run starts.
  unknown = set(config.methods) - set(results.METHODS)
  if unknown:
    raise ValueError(f'unknown methods {sorted(unknown)}; expected some of {results.METHODS}')
  if config.seeds < 1 or config.workers < 1:
    raise ValueError('--seeds and --workers must be at least 1')
  if config.online_steps < 0:
    raise ValueError(f'--online_steps must be 0 (the scale\'s) or positive, got '
                     f'{config.online_steps}')
  os.makedirs(workdir, exist_ok=True)
  _check_sweep_settings(config, workdir)
  start = time.perf_counter()
  if config.report_only:
    return write_report(config, workdir)
  root = os.path.abspath(workdir)  # Runs may start in another directory, or on another node.
  with sweep.from_config(config) as executor:
    executor.check_shared_dir(root)
    _run_all(_plan(config, root), executor, root, config.online_steps)
  seconds = time.perf_counter() - start
  timing = parallel_timing(config, workdir, since=time.time() - seconds)
  if timing:
    print(timing)
    results.write_text(os.path.join(workdir, 'timing.md'), timing + '\n')
  return write_report(config, workdir, seconds)


def parallel_timing(config: Config, workdir: str, since: float) -> str:
  """Seed-parallel speed-up of the runs started after `since`: their summed run time over the
  wall-clock span from the first start to the last end (1.0 for one worker, at most
  `workers`); '' if no run was timed."""
  spans = []
  for task in config.tasks:
    for seed in _seeds(config):
      base = os.path.join(workdir, task, f'seed{seed}')
      for stage in sorted(os.listdir(base)) if os.path.isdir(base) else ():
        done = _done(os.path.join(base, stage))
        if done and done.get('started', 0.0) >= since and 'seconds' in done:
          spans.append((done['started'], done['started'] + done['seconds']))
  if not spans:
    return ''
  busy = sum(end - start for start, end in spans)
  wall = max(end for _, end in spans) - min(start for start, _ in spans)
  where = (f'with {config.workers} worker process(es)' if config.executor == 'local' else
           f'on Ray ({config.cpus_per_run:g} CPU, {config.gpus_per_run:g} GPU per run)')
  return (f'{len(spans)} runs, {busy / 60:.1f} min of run time in {wall / 60:.1f} min wall-clock '
          f'{where}: seed-parallel speed-up {busy / max(wall, 1e-9):.2f}x')


def _online_budget(config: Config, task: str, online_steps: int) -> int:
  """Online env steps of the sweep's IQL, CVPO and GOLD runs on `task`."""
  if online_steps:
    return online_steps
  from gold_jax.stages import distill
  return presets.stages(config.scale, task)['distill'].get('total_steps',
                                                           distill.Config.total_steps)


def _budgets_against_paper(config: Config, tasks: Sequence[str],
                           ran: Mapping[str, Mapping[int, int]]) -> str:
  """How our episodes and online budgets compare with the paper's, which it does not state.
  `ran`: the env steps of the finished online runs per task (`results.online_budgets`); a
  task without any is given the sweep's budget."""
  def length(task):
    return presets.stages(config.scale, task)['distill'].get(
        'max_episode_steps', envs.get_spec(task).max_episode_steps)

  def steps(task):
    done = sorted(ran.get(task, ()))
    if not done:
      return f'{_online_budget(config, task, config.online_steps):,}'
    return f'{done[0]:,}' if len(done) == 1 else f'{done[0]:,} to {done[-1]:,}'

  paper_scale = dataclasses.replace(config, scale='paper', online_steps=0)
  ours = '; '.join(f'{t}: episodes of {length(t)} steps, {steps(t)} online env steps'
                   for t in tasks)
  return (f'Our budgets: {ours}. The `paper` scale runs '
          f'{_online_budget(paper_scale, tasks[0], 0):,} online env steps per run.\n')


def _check_sweep_settings(config: Config, workdir: str) -> None:
  """Runs of one workdir share their budget and guide kind: a sweep with other settings
  would reuse runs made with these, so it is refused (`sweep.json` records them). The online
  budget may grow (the finished runs are extended), never shrink."""
  path = os.path.join(workdir, 'sweep.json')
  current = {'scale': config.scale, 'dt_cost_token': config.dt_cost_token,
             'lambda_rule': config.lambda_rule, 'eval_protocol': protocol.VERSION,
             'online_steps': config.online_steps}
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    # Of sweeps that lack a key; a sweep scored under an older protocol is refused.
    defaults = {'dt_cost_token': False, 'lambda_rule': 'fixed', 'eval_protocol': 1,
                'online_steps': 0}
    saved = {k: saved.get(k, defaults.get(k)) for k in current}
    differ = sorted(k for k in current if saved[k] != current[k] and k != 'online_steps')
    if differ:
      raise ValueError(f'{workdir} holds a sweep with other settings ('
                       + ', '.join(f'{k}: {saved[k]!r} -> {current[k]!r}' for k in differ)
                       + '); use another --workdir')
    if config.report_only:
      return
    for task in config.tasks:
      before = _online_budget(config, task, saved['online_steps'])
      now = _online_budget(config, task, config.online_steps)
      if now < before:
        raise ValueError(f'{workdir} holds runs of {before} online env steps on {task}; '
                         f'--online_steps={config.online_steps} would be fewer (a sweep can be '
                         'extended, not shortened); use another --workdir')
    if saved['online_steps'] != current['online_steps']:
      results.write_text(path, json.dumps(current, indent=1))
  elif not config.report_only:
    results.write_text(path, json.dumps(current, indent=1))


def _seeds(config: Config) -> range:
  return range(config.first_seed, config.first_seed + config.seeds)


def _cell_path(workdir: str, task: str, seed: int, method: str) -> str:
  return os.path.join(workdir, task, f'seed{seed}', _stage_of(method))


def collect_results(config: Config, workdir: str):
  """The per-run rows of the finished runs (`results.RUN_COLUMNS`; the expert and the guides
  the GOLD runs used included), and the failed runs with their last error line."""
  rows, failed = [], {}
  extra = tuple(m for m in _guide_methods(config) if m not in config.methods)
  for task in config.tasks:
    for method in (results.EXPERT,) + tuple(config.methods) + extra:
      for seed in _seeds(config):
        path = _cell_path(workdir, task, seed, method)
        done = _done(path)
        if done is not None:
          rows.append(results.run_row(task, method, seed, done))
        elif os.path.exists(os.path.join(path, 'error.txt')):
          with open(os.path.join(path, 'error.txt')) as f:
            lines = [l for l in f.read().strip().splitlines() if l.strip()]
          failed[f'{task}/seed{seed}/{method}'] = lines[-1] if lines else 'unknown error'
  return rows, failed


def with_committed_rows(rows: Sequence[Mapping[str, str]], paths: Sequence[str]
                        ) -> List[Mapping[str, str]]:
  """`rows`, then the rows of the runs.csv files at `paths` whose (task, method, seed) cell is
  not among them (the first file that has a cell gives it)."""
  out = list(rows)
  have = {(r['task'], r['method'], int(r['seed'])) for r in out}
  for path in paths:
    if not os.path.isfile(path):
      raise errors.DatasetError(f'{path}: no such runs.csv',
                                hint='--runs_csv takes the runs.csv files of earlier sweeps')
    for row in results.read_runs_csv(path):
      key = (row['task'], row['method'], int(row['seed']))
      if key not in have:
        out.append(row)
        have.add(key)
  return out


def write_report(config: Config, workdir: str, seconds: float = 0.0) -> Dict[str, Any]:
  """runs.csv from the finished runs (and the rows of `config.runs_csv` for the cells they
  lack), then the table, experts and curves computed from it."""
  from gold_jax import plots
  rows, failed = collect_results(config, workdir)
  rows = with_committed_rows(rows, config.runs_csv)
  runs_path = os.path.join(workdir, 'runs.csv')
  results.write_runs_csv(rows, runs_path)
  rows = results.read_runs_csv(runs_path)  # The tables come from the committed file.
  table = results.table_from_rows(rows, config.tasks, config.methods)
  kappas = {t: envs.get_spec(t).cost_threshold for t in config.tasks}
  driving = [t for t in config.tasks if envs.get_spec(t).has_success and 'MetaDrive' in t]
  theirs = {t: paper.printed(t) for t in config.tasks if paper.printed(t)}
  md = results.to_markdown(table, kappas, config.methods, with_success=driving, failed=failed,
                           paper=theirs)
  if theirs:
    md += '\n' + _budgets_against_paper(config, list(theirs), results.online_budgets(rows))
  for extra in (results.verdicts(rows, kappas), results.experts_markdown(rows, kappas)):
    md += '\n' + extra if extra else ''
  mixed = results.mixed_eval_sets(rows)
  if mixed:
    md += ('\nCells of these rows were scored on different evaluation sets: '
           + ', '.join(f'{t} seed {s}' for t, s in mixed) + '.\n')
  for task, steps in results.mixed_budgets(rows).items():
    md += (f'\nThe online runs of {task} differ in env steps ('
           + ', '.join(f'{n} run{"s" * (n > 1)} at {k}' for k, n in sorted(steps.items()))
           + '): its cells mix budgets until every run reaches the last.\n')
  curves = {task: _curves(config, workdir, task) for task in config.tasks}
  for task, (reward_runs, cost_runs) in curves.items():
    ends = results.curve_ends(reward_runs, cost_runs)
    if ends:
      md += f'\n{task}. ' + ends
  results.write_text(os.path.join(workdir, 'table1.md'), md)
  results.to_csv(table, os.path.join(workdir, 'table1.csv'))
  export_experts(config, workdir)
  for task, (reward_runs, cost_runs) in curves.items():  # Fig. 2: curves of the online methods.
    if reward_runs:
      plots.reward_cost_curves(reward_runs, cost_runs,
                               os.path.join(workdir, f'curves_{task}.png'),
                               cost_threshold=kappas[task], title=task)
  latency_md = latency_report(config, workdir)
  for task in config.tasks:  # Fig. 3: paths of the distilled student (Point/Car tasks).
    student = _cell_path(workdir, task, config.first_seed, 'GOLD(DT-IQL)')
    if _done(student) is not None and not task.startswith('MetaDrive'):
      _guarded(lambda: _trajectory_plot(config, student, workdir, task))
  print(md)
  print(latency_md)
  return {'table': md, 'failed': failed, 'seconds': seconds, 'latency': latency_md}


def _curves(config: Config, workdir: str, task: str):
  """Per-method evaluation reward and cost curves (one `(steps, values)` per finished seed) of
  the online methods on `task`."""
  from gold_jax import logger as logger_lib
  reward_runs, cost_runs = {}, {}
  for method in config.methods:
    if method not in DISTILL_METHODS:
      continue
    for seed in _seeds(config):
      csv_path = os.path.join(_cell_path(workdir, task, seed, method), 'metrics.csv')
      if _done(os.path.dirname(csv_path)) is None or not os.path.exists(csv_path):
        continue
      cols = logger_lib.read_csv(csv_path)
      reward_runs.setdefault(method, []).append(
          logger_lib.metric_series(cols, 'evaluation/reward_mean'))
      cost_runs.setdefault(method, []).append(
          logger_lib.metric_series(cols, 'evaluation/cost_mean'))
  return reward_runs, cost_runs


def _guarded(fn):
  try:
    return fn()
  except Exception as e:  # pylint: disable=broad-except  # Extras never lose the table.
    logging.warning('report extra failed: %s: %s', type(e).__name__, e)
    return None


def _trajectory_plot(config: Config, student_dir: str, workdir: str, task: str) -> None:
  from gold_jax.stages import evaluate
  overrides = presets.stages(config.scale, task)['distill']
  out = os.path.join(workdir, f'trajectory_{task}')
  evaluate.run(evaluate.Config(ckpt=student_dir, episodes=2, num_envs=2, plot=True,
                               plot_episodes=2,
                               max_episode_steps=overrides.get('max_episode_steps')), out)
  os.replace(os.path.join(out, 'trajectory.png'),
             os.path.join(workdir, f'trajectory_{task}.png'))


def latency_report(config: Config, workdir: str) -> str:
  """Sec. IV-D1: per-decision time and parameter count of the DT guide vs the distilled MLP."""
  import jax
  import numpy as np
  from gold_jax import export as export_lib
  from gold_jax.policies import MLPPolicy, load_guide, load_policy
  lines = ['| task | policy | parameters | ms / decision |', '|---|---|---|---|']
  for task in config.tasks:
    seed = config.first_seed
    dt_dir = os.path.join(workdir, task, f'seed{seed}', 'dt')
    student_dir = _cell_path(workdir, task, seed, 'GOLD(DT-IQL)')
    if _done(dt_dir) is None or _done(student_dir) is None:
      continue
    guide = load_guide(checkpoint_dir(dt_dir, of_run=True))
    _, info = load_policy(student_dir)
    student = MLPPolicy(info['module'], info['state'], deterministic=True)
    obs = np.zeros((1, info['obs_dim']), np.float32)
    guide.reset(1)

    def dt_decision():
      guide.observe(guide.act(obs), np.zeros(1), np.zeros(1))

    dt_ms = 1e3 * export_lib.latency(dt_decision, repeats=100)
    mlp_ms = 1e3 * export_lib.latency(lambda: student.act(obs))
    dt_params = sum(np.size(x) for x in jax.tree.leaves(guide.state.params))
    mlp_params = sum(np.size(x) for x in jax.tree.leaves(export_lib.actor_of(info['state'])[0]))
    lines.append(f'| {task} | DT guide | {dt_params:,} | {dt_ms:.3f} |')
    lines.append(f'| {task} | GOLD student (MLP) | {mlp_params:,} | {mlp_ms:.3f} |')
    lines.append(f'| {task} | ratio DT / MLP | {dt_params / mlp_params:.1f}x | '
                 f'{dt_ms / mlp_ms:.1f}x |')
  text = ('Per-decision latency (batch 1, after compilation, median of repeated calls) on '
          f'{jax.devices()[0].platform}.\n\n' + '\n'.join(lines) + '\n')
  results.write_text(os.path.join(workdir, 'latency.md'), text)
  return text
