r"""Safe driving on real Waymo scenarios: GOLD against its guides and from-scratch learners.

  python -m experiments.driving --data_dir=$GOLD_WOMD_DIR --workdir=runs/driving --scale=small

Stages, each skipped when its output already exists (a rerun resumes where it stopped):

1. `split/`: the scenarios are split by name into train and test (`--test_fraction`, or the
   scenarios named by `--test_scenarios`), as two ScenarioNet directories that point back at the
   original files (`gold_jax.driving.split`).
2. `demos/`: the human ego logs of the TRAIN scenarios become demonstrations in the simulator
   (`gold_jax.stages.extract_demos`, in `--workers` processes; scenarios whose log cannot be
   followed are dropped, with the reason in `demos/reports.json`).
3. `guides/{dt,bc}/`: a Decision Transformer and a BC guide are trained on them
   (`gold_jax.stages.train_guide`, with the driving settings of `gold_jax.presets`).
4. `online/<method>/`: GOLD(DT-IQL), GOLD(BC-IQL), GOLD(DT-CVPO) and IQL / CVPO from scratch
   train online on the TRAIN scenarios (`gold_jax.stages.distill`). Stages 3 and 4 run one
   after another in this process, in `--workers` processes, or as Ray tasks
   (`--executor=ray`, each online run after its guide; `gold_jax.sweep`).
5. `eval/<method>.json`: every method drives each held-out TEST scenario once
   (`gold_jax.driving.evaluate`), as soon as its policy is trained, on the same executor. With
   `--extra_test_dir` (e.g. the real WOMD scenarios beside a generated corpus) every method also
   drives each scenario of that second held-out set once (`eval_extra/`).

Then it prints and writes (`results.json`, `results.md`) the table of reward, cost, success,
crash and out-of-road rates per method, and `trajectories.png`: the methods' paths against the
human log on one test scenario. `--methods` picks a subset; only the guides and runs those
methods need are trained. With the three Waymo scenarios available here the split is 2 / 1:
one test scenario, so every rate in the table is 0 or 1.
"""

import dataclasses
import os
import pathlib
import pickle
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from gold_jax.stages import distill
from gold_jax.stages import extract_demos as extraction
from gold_jax.stages import train_guide
from gold_jax import jsrl, sweep
from gold_jax.agents import lagrange
from gold_jax.checkpoints import checkpoint_dir
from gold_jax import presets
from gold_jax.driving import evaluate as driving_eval
from gold_jax.driving import plots
from gold_jax.driving import pool
from gold_jax.driving import split
from gold_jax.envs import metadrive as md
from gold_jax.launch import check_same_config, load_json, save_json
from gold_jax.loop import LoopConfig
from gold_jax.policies import load_policy

TASK = driving_eval.TASK


@dataclasses.dataclass(frozen=True)
class Method:
  """One row of the table: an offline guide alone, or an online run (guide 'none': scratch)."""
  name: str
  guide: str  # 'dt', 'bc' or 'none'
  backbone: Optional[str] = None  # 'iql' / 'cvpo' for online runs; None for a guide alone

  @property
  def slug(self) -> str:
    if self.backbone is None:
      return self.guide
    return self.backbone if self.guide == 'none' else f'gold_{self.guide}_{self.backbone}'


METHODS = {m.name: m for m in (
    Method('BC', 'bc'), Method('DT', 'dt'), Method('IQL', 'none', 'iql'),
    Method('CVPO', 'none', 'cvpo'), Method('GOLD(BC-IQL)', 'bc', 'iql'),
    Method('GOLD(DT-CVPO)', 'dt', 'cvpo'), Method('GOLD(DT-IQL)', 'dt', 'iql'))}
PLOT_METHODS = ('GOLD(DT-IQL)', 'DT', 'IQL', 'GOLD(DT-CVPO)')


@dataclasses.dataclass(frozen=True)
class Config:
  data_dir: str = ''  # ScenarioNet directory; '' = $GOLD_WOMD_DIR.
  methods: Tuple[str, ...] = tuple(METHODS)  # Rows of the table (names of METHODS).
  scale: str = 'small'  # Budget: 'smoke', 'small', 'medium' or 'paper' (gold_jax.presets).
  test_fraction: float = 0.2  # Share of the scenarios held out for testing (at least one).
  test_scenarios: Tuple[str, ...] = ()  # Held-out scenarios by file name or scenario id;
                                        # overrides test_fraction.
  extra_test_dir: str = ''  # A second held-out set, e.g. real WOMD next to a generated corpus:
                            # a ScenarioNet directory sharing no scenario with the train part;
                            # every row is also scored once on each of its scenarios.
  plot_scenario: str = ''  # Test scenario (file name or id) drawn; '' = the first one.
  plot_methods: Tuple[str, ...] = PLOT_METHODS  # Methods drawn against the human log.
  seed: int = 0  # First seed of the learners and the envs.
  seeds: int = 1  # Seeds seed, seed+1, ...: one study each in <workdir>/seed<k>, then pooled
                  # (gold_jax.driving.pool: runs.csv, table.md with Wilson intervals).
  split_seed: int = 0  # Seeds the train/test split, the same for every seed.
  progress: bool = False  # Progress bars of the training stages.
  # Where the guides and online runs execute (gold_jax.sweep.ExecutorConfig): 'local' (one
  # after another, or `workers` processes) or 'ray' tasks, each online run after its guide.
  executor: str = 'local'  # 'local' (a process pool) or 'ray' (pip install -e .[ray]).
  workers: int = 1  # Runs at once on this machine (local pool, or a local Ray's CPUs).
  ray_address: str = ''  # Ray cluster to join (auto, head:6379); '': a local Ray.
  cpus_per_run: float = 1.0  # Ray: CPUs per run.
  gpus_per_run: float = 0.0  # Ray: GPUs per run (0.25: a quarter of a GPU and its memory).
  max_retries: int = 3  # Ray: retries of a run whose worker died.


# Fields that may change between reruns of one workdir (they do not change finished stages).
_RESUMABLE = ('methods', 'extra_test_dir', 'plot_scenario', 'plot_methods', 'progress',
              'seeds') + sweep.EXECUTOR_FIELDS


def validate(config: Config) -> None:
  unknown = [m for m in config.methods if m not in METHODS]
  if unknown or not config.methods:
    raise ValueError(f'--methods must be a non-empty subset of {list(METHODS)}, got '
                     f'{list(config.methods)}')
  presets.driving(config.scale)
  if not 0.0 < config.test_fraction < 1.0:
    raise ValueError(f'--test_fraction must be in (0, 1), got {config.test_fraction}')
  if config.seeds < 1:
    raise ValueError(f'--seeds must be at least 1, got {config.seeds}')
  unknown = [m for m in config.plot_methods if m not in METHODS]
  if unknown:
    raise ValueError(f'--plot_methods: unknown methods {unknown}')


# -- 1. Split -------------------------------------------------------------------------------


def _scenario_names(data_dir) -> Dict[str, str]:
  """File name -> scenario id, in index order."""
  with open(pathlib.Path(data_dir) / md.SUMMARY_FILE, 'rb') as f:
    summary = pickle.load(f)
  ids = {}
  for path in md.scenario_files(data_dir):
    entry = summary.get(path.name, {})
    ids[path.name] = str(entry.get('id', entry.get('scenario_id', path.stem)))
  return ids


def _match(wanted: str, names: Dict[str, str]) -> str:
  for name, scenario_id in names.items():
    if wanted in (name, pathlib.Path(name).stem, scenario_id):
      return name
  raise ValueError(f'scenario {wanted!r} is not in the data (known: '
                   f'{", ".join(names.values())})')


def make_split(config: Config, data_dir, workdir) -> Dict[str, Any]:
  """Writes `split/{train,test}` and `split/split.json`; returns the split (names and dirs)."""
  out = pathlib.Path(workdir) / 'split'
  names = _scenario_names(data_dir)
  if config.test_scenarios:
    test = {_match(s, names) for s in config.test_scenarios}
    parts = {'train': [n for n in names if n not in test], 'test': [n for n in names if n in test]}
    if not parts['train']:
      raise ValueError('--test_scenarios holds out every scenario: nothing left to train on')
    dirs = split.write_parts(data_dir, out, parts)
  else:
    dirs = split.write_split(data_dir, out, config.test_fraction, config.split_seed)
  result = {}
  for part, directory in dirs.items():
    files = [p.name for p in md.scenario_files(directory)]
    result[part] = {'dir': str(directory), 'files': files, 'ids': [names[f] for f in files]}
  if set(result['train']['files']) & set(result['test']['files']):
    raise RuntimeError('train and test scenarios overlap')  # Never: the split is disjoint.
  save_json(str(out / 'split.json'), result)
  return result


# -- 2-3. Demonstrations and guides ---------------------------------------------------------------


def extract_demos(train_dir, workdir, workers: int = 1) -> str:
  """Demonstrations of the train scenarios' human logs (`demos/demos.npz`); returns its path.

  `gold_jax.stages.extract_demos` does the work, in `workers` processes, one scenario at a time
  (an interrupted extraction resumes at the first scenario without a report).
  `demos/reports.json` records, per train scenario, the tracking error and outcome or why it
  was dropped.
  """
  out = pathlib.Path(workdir) / 'demos'
  dataset, reports_path = out / 'demos.npz', out / 'reports.json'
  if dataset.exists() and reports_path.exists():
    return str(dataset)
  reports = extraction.extract_to_dir(train_dir, out, workers)
  kept = [r for r in reports if r.kept]
  if not kept:
    reasons = '; '.join(f'{r.name}: {r.reason}' for r in reports)
    raise RuntimeError(f'no train scenario gave a demonstration ({reasons})')
  logging.info('demonstrations: %d of %d train scenarios kept', len(kept), len(reports))
  save_json(str(reports_path), [dataclasses.asdict(r) for r in reports])  # Last: marks it done.
  return str(dataset)


def episode_len(train_dir, extra_test_dir: str = '') -> int:
  """Steps per episode of the study's envs: the longest scenario of the train and test parts and
  of the `--extra_test_dir` set (`md.episode_steps`; 90 for WOMD's 91 frames, more for nuScenes
  or Argoverse data), so that no scenario is cut at WOMD's length and the DT's timestep table
  and the curriculum's T cover every scenario a policy drives."""
  dirs = [pathlib.Path(train_dir), pathlib.Path(train_dir).parent / 'test',
          *([pathlib.Path(extra_test_dir)] if extra_test_dir else [])]
  return max(md.episode_steps(d) for d in dirs if (d / md.SUMMARY_FILE).is_file())


def guide_config(algo: str, p: presets.DrivingPreset, dataset: str, train_dir, config: Config
                 ) -> train_guide.Config:
  """The `train_guide.Config` of the DT or BC guide at the scale's budget."""
  common = dict(algo=algo, dataset=dataset, task=TASK, eval_episodes=0, seed=config.seed,
                progress=config.progress, tensorboard=False,
                max_episode_steps=episode_len(train_dir, config.extra_test_dir),
                env_options={'data_dir': str(train_dir)})
  if algo == 'bc':
    steps = p.bc_steps
    return train_guide.Config(
        steps=steps, updates_per_call=min(p.guide_updates_per_call, steps),
        batch_size=p.bc_batch_size, hidden_dims=tuple(p.bc_hidden_dims), log_every=steps,
        checkpoint_every=steps, **common)
  steps = p.dt_steps
  return train_guide.Config(
      steps=steps, updates_per_call=min(p.guide_updates_per_call, steps),
      batch_size=p.dt_batch_size, embed_dim=p.dt_embed_dim, num_layers=p.dt_num_layers,
      num_heads=p.dt_num_heads, context_len=p.dt_context_len, dropout_rate=p.dt_dropout_rate,
      warmup_steps=p.dt_warmup_steps, return_scale=p.dt_return_scale,
      target_return=p.dt_target_returns[0] if p.dt_target_returns else None,
      target_quantile=1.0, log_every=steps, checkpoint_every=steps, **common)


def train_guides(algos: Sequence[str], p: presets.DrivingPreset, dataset: str, train_dir, workdir,
                 config: Config) -> Dict[str, str]:
  """Trains the guides `algos` not yet finished; returns their checkpoint directories."""
  result = {}
  for algo in algos:
    run_dir = os.path.join(workdir, 'guides', algo)
    if load_json(os.path.join(run_dir, 'summary.json')) is None:
      start = time.perf_counter()
      train_guide.run(guide_config(algo, p, dataset, train_dir, config), run_dir)
      logging.info('guide %s trained in %.0f s', algo, time.perf_counter() - start)
    result[algo] = checkpoint_dir(run_dir, of_run=True)
  return result


# -- 4. Online runs -------------------------------------------------------------------------------


def online_config(method: Method, p: presets.DrivingPreset, guide_ckpt: str, train_dir,
                  config: Config) -> distill.Config:
  """The `distill.Config` of an online method at the scale's budget."""
  return distill.Config(
      task=TASK, guide=method.guide, guide_ckpt=guide_ckpt if method.guide != 'none' else '',
      backbone=method.backbone, cvpo_preset=p.cvpo_preset,
      schedule=jsrl.ScheduleConfig(kind='horizon', steps=tuple(p.guide_steps),
                                   stage_steps=p.stage_steps),
      total_steps=p.total_steps, num_envs=1,
      loop=LoopConfig(utd=p.utd, train_every=p.train_every, batch_size=p.batch_size,
                      learning_starts=p.learning_starts),
      replay_capacity=p.replay_capacity, eval_every=p.eval_every,
      eval_episodes=p.eval_episodes,
      multiplier=lagrange.Config(rule='fixed', value=p.cost_coef),
      hidden_dims=tuple(p.student_hidden_dims),
      max_episode_steps=episode_len(train_dir, config.extra_test_dir),
      seed=config.seed, progress=config.progress, env_options={'data_dir': str(train_dir)},
      # Curve points and the run's own final numbers come from the held-out scenarios.
      eval_env_options={'data_dir': str(pathlib.Path(train_dir).parent / 'test')})


def train_online(method: Method, p: presets.DrivingPreset, guides: Dict[str, str], train_dir, workdir,
                 config: Config) -> str:
  """Trains (or resumes) one online method unless finished; returns its run directory."""
  run_dir = os.path.join(workdir, 'online', method.slug)
  done = os.path.join(run_dir, 'done.json')
  if load_json(done) is None:
    start = time.perf_counter()
    summary = distill.train_and_evaluate(
        online_config(method, p, guides.get(method.guide, ''), train_dir, config), run_dir)
    if summary.get('interrupted'):
      raise KeyboardInterrupt(f'{method.name} interrupted; rerun to resume')
    save_json(done, {'seconds': time.perf_counter() - start,
                     **{k: v if isinstance(v, str) else float(v) for k, v in summary.items()}})
  return run_dir


def policy_checkpoint(method: Method, guides: Dict[str, str], workdir) -> str:
  if method.backbone is None:
    return guides[method.guide]
  return os.path.join(workdir, 'online', method.slug)


# -- 5. Evaluation on the held-out sets, and the graph of runs -----------------------------------


def eval_rows(methods: Sequence[Method], dt_targets: Sequence[float] = ()
              ) -> List[Tuple[str, Method, Optional[float]]]:
  """The table's rows: (name, method, DT conditioning return or None). A DT guide is also
  scored at every conditioning return of `dt_targets` after the first (rows `DT(R=...)`)."""
  rows: List[Tuple[str, Method, Optional[float]]] = []
  for method in methods:
    rows.append((method.name, method, None))
    if method.name == 'DT':
      rows += [(f'DT(R={target:g})', method, float(target)) for target in dt_targets[1:]]
  return rows


def evaluate_row(name: str, method: Method, target: Optional[float], guides: Dict[str, str],
                 test_dir, workdir, seed: int, held_out: str = 'test') -> Dict[str, Any]:
  """Drives each scenario of `test_dir` once with the policy of row `name`; the result is
  cached in `pool.eval_path(workdir, name, held_out)` and returned."""
  path = pool.eval_path(workdir, name, held_out)
  cached = load_json(path)
  if cached is None:
    env = driving_eval.make_scenario_env(test_dir, seed=seed,
                                         max_episode_steps=md.episode_steps(test_dir))
    try:
      policy, _ = load_policy(policy_checkpoint(method, guides, workdir), target)
      metrics, episodes = driving_eval.evaluate_scenarios(policy, env)
    finally:
      env.close()
    cached = {'method': name, 'metrics': metrics,
              'scenarios': driving_eval.episode_rows(episodes),
              'paths': [e['ego_xy'].tolist() for e in episodes]}
    save_json(path, cached)
  return cached


def run_all(methods: Sequence[Method], p: presets.DrivingPreset, dataset: str, train_dir,
            held_out: Dict[str, str], workdir, config: Config) -> Dict[str, Dict[str, Dict]]:
  """Trains the guides and online runs that `methods` need (each online run after its guide)
  and scores every row on each held-out set (`held_out`: name -> ScenarioNet directory) once
  its policy is trained, all on the executor of `config` (`gold_jax.sweep`). Finished runs and
  evaluations are skipped. Returns {held-out set: {row: evaluation}}; raises if a run failed."""
  root, train_dir = os.path.abspath(workdir), os.path.abspath(train_dir)  # Seen by any worker.
  algos = sorted({m.guide for m in methods if m.guide != 'none'})
  guides = {a: checkpoint_dir(os.path.join(root, 'guides', a), of_run=True) for a in algos}
  with sweep.from_config(config) as executor:
    executor.check_shared_dir(root)
    trained = {a: executor.submit(train_guides, ([a], p, dataset, train_dir, root, config),
                                  name=f'guides/{a}') for a in algos}
    for method in methods:
      if method.backbone is not None:
        print(f'online: {method.name}')
        trained[method.name] = executor.submit(
            train_online, (method, p, guides, train_dir, root, config),
            after=[trained[method.guide]] if method.guide in trained else [],
            name=f'online/{method.slug}')
    scored = {}
    for set_name, test_dir in held_out.items():
      for name, method, target in eval_rows(methods, p.dt_target_returns):
        policy_run = trained[method.guide if method.backbone is None else method.name]
        scored[set_name, name] = executor.submit(
            evaluate_row, (name, method, target, guides, os.path.abspath(test_dir), root,
                           config.seed, set_name),
            after=[policy_run], name=f'eval/{set_name}/{name}')
    handles = {**{f'train {k}': h for k, h in trained.items()},
               **{f'eval {s}/{n}': h for (s, n), h in scored.items()}}
    results = dict(zip(handles, executor.gather(list(handles.values()))))
  failed = [f'{name}: {r["error"]}' for name, r in results.items()
            if isinstance(r, dict) and 'error' in r]
  if failed:
    raise RuntimeError('driving runs failed: ' + '; '.join(failed))
  out: Dict[str, Dict[str, Dict]] = {s: {} for s in held_out}
  for set_name, name in scored:
    out[set_name][name] = results[f'eval {set_name}/{name}']
  return out


# -- Report ---------------------------------------------------------------------------------------

COLUMNS = (('reward', 'reward/mean'), ('cost', 'cost/mean'), ('success', 'success_rate'),
           ('crash', 'crash_rate'), ('out_of_road', 'out_of_road_rate'))


def table_rows(results: Dict[str, Dict]) -> List[Dict[str, float]]:
  """One row per method: reward and cost (means), success / crash / out-of-road rates."""
  return [{'method': name, 'episodes': int(r['metrics']['episodes']),
           **{column: float(r['metrics'][key]) for column, key in COLUMNS}}
          for name, r in results.items()]


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
  """A Markdown table of `table_rows`."""
  head = ['method', 'reward', 'cost', 'success rate', 'crash rate', 'out-of-road rate',
          'episodes']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in rows:
    lines.append(f'| {r["method"]} | {r["reward"]:.2f} | {r["cost"]:.2f} | {r["success"]:.2f} '
                 f'| {r["crash"]:.2f} | {r["out_of_road"]:.2f} | {r["episodes"]} |')
  return '\n'.join(lines)


def plot_trajectories(results: Dict[str, Dict], split_info: Dict[str, Any], config: Config,
                      workdir) -> Optional[str]:
  """Bird's-eye view of the plotted methods' paths and the human log on one test scenario."""
  test = split_info['test']
  wanted = config.plot_scenario or test['files'][0]
  index = next((i for i, (f, s) in enumerate(zip(test['files'], test['ids']))
                if wanted in (f, pathlib.Path(f).stem, s)), None)
  if index is None:
    logging.warning('plot scenario %r is not a test scenario; no plot', wanted)
    return None
  scenario_id = test['ids'][index]
  paths = {name: np.asarray(results[name]['paths'][index])  # Episodes follow the test order.
           for name in config.plot_methods if name in results}
  if not paths:
    return None
  scenario = md.read_scenario(md.scenario_files(test['dir'])[index])
  out = plots.plot_scenario(scenario, os.path.join(workdir, 'trajectories.png'), paths=paths,
                            title=f'test scenario {scenario_id}: policies vs human log')
  return str(out)


def _held_out_note(ids: Sequence[str]) -> str:
  return ', '.join(ids) if len(ids) <= 10 else f'{len(ids)} scenarios, listed in split/split.json'


def write_report(rows, split_info, config: Config, plot: Optional[str], workdir,
                 seconds: float, extra: Optional[Dict[str, Any]] = None) -> str:
  """results.json and results.md; returns the Markdown. `extra`: the second held-out set
  (`dir`, `files`, `ids`, `episode_len`, `rows`), if any."""
  n_train, n_test = len(split_info['train']['files']), len(split_info['test']['files'])
  note = (f'{n_train} train / {n_test} test scenarios (held out: '
          f'{_held_out_note(split_info["test"]["ids"])}); one episode per test scenario, '
          f'scale `{config.scale}`, seed {config.seed}.')
  if n_test < 5:
    note += (f' With {n_test} test scenario(s) every rate is a mean of {n_test} 0/1 outcome(s): '
             'a tiny test set that shows the pipeline working, not a measurement of the '
             'methods.')
  markdown = (f'# MetaDrive-Waymo: safe driving on held-out scenarios\n\n{note}\n\n'
              f'{format_table(rows)}\n')
  if extra:
    markdown += (f'\n## Second held-out set: {len(extra["files"])} scenarios of '
                 f'`{os.path.basename(extra["dir"])}` ({_held_out_note(extra["ids"])})\n\n'
                 f'{format_table(extra["rows"])}\n')
  if plot:
    markdown += f'\n![trajectories]({os.path.basename(plot)})\n'
  save_json(os.path.join(workdir, 'results.json'),
            {'rows': rows, 'split': split_info, 'config': dataclasses.asdict(config),
             'episode_len': md.episode_steps(split_info['test']['dir']), 'extra': extra,
             'preset': dataclasses.asdict(presets.driving(config.scale)), 'plot': plot,
             'seconds': seconds, 'note': note})
  pathlib.Path(workdir, 'results.md').write_text(markdown)
  return markdown


def extra_held_out(config: Config, split_info: Dict[str, Any], workdir
                   ) -> Optional[Dict[str, Any]]:
  """The second held-out set of `--extra_test_dir` (`dir`, `files`, `ids`, `episode_len`);
  refused if it shares a scenario with the train part, or if it is longer than the scenarios
  that the runs already started in `workdir` were sized for (an extra set added on a resume)."""
  if not config.extra_test_dir:
    return None
  directory = pathlib.Path(config.extra_test_dir).resolve()
  if not (directory / md.SUMMARY_FILE).is_file():
    raise FileNotFoundError(f'--extra_test_dir {directory}: no {md.SUMMARY_FILE} (not a '
                            'ScenarioNet directory)')
  names = _scenario_names(directory)
  shared = sorted(set(names.values()) & set(split_info['train']['ids']))
  if shared:
    raise ValueError(f'--extra_test_dir shares {len(shared)} scenario(s) with the train part '
                     f'({", ".join(shared[:5])}): it would not be held out')
  length = md.episode_steps(directory)
  too_short = {str(path.parent.relative_to(workdir)): steps
               for part in ('guides', 'online')
               for path in sorted(pathlib.Path(workdir, part).glob('*/config.json'))
               if (steps := (load_json(str(path)) or {}).get('max_episode_steps')) is not None
               and steps < length}
  if too_short:
    raise ValueError(f'--extra_test_dir {directory} has scenarios of {length} steps, longer than '
                     f'the runs already started in {workdir} were configured for '
                     f'({", ".join(f"{k}: {v}" for k, v in too_short.items())}): their timestep '
                     'tables and curricula would not cover it; pass it from the first run of a '
                     'study')
  return {'dir': str(directory), 'files': list(names), 'ids': list(names.values()),
          'episode_len': length}


# -- The pipeline ---------------------------------------------------------------------------------


def run(config: Config, workdir: str) -> Dict[str, Any]:
  """Runs (or resumes) the study: with `seeds` > 1 one study per seed in `workdir/seed<k>`,
  pooled into `workdir` (`gold_jax.driving.pool`); returns the last seed's
  `{'rows', 'split', 'markdown', 'plot'}`, with `'pooled'` when several seeds ran."""
  validate(config)
  if config.seeds == 1:
    return run_seed(config, workdir)
  os.makedirs(workdir, exist_ok=True)
  check_same_config(workdir, config, may_differ=_RESUMABLE)
  dirs = [os.path.join(workdir, f'seed{config.seed + k}') for k in range(config.seeds)]
  for k, seed_dir in enumerate(dirs):  # One split for all seeds: one set of demonstrations.
    out = run_seed(dataclasses.replace(config, seed=config.seed + k, seeds=1), seed_dir,
                   demos_dir=workdir)
  pooled = pool.pool(dirs, workdir)
  print(pooled['markdown'])
  if config.extra_test_dir:
    pooled['extra'] = pool.pool(dirs, workdir, held_out='extra')
    print(pooled['extra']['markdown'])
  return dict(out, pooled=pooled)


def run_seed(config: Config, workdir: str, demos_dir: Optional[str] = None) -> Dict[str, Any]:
  """Runs (or resumes) every stage for one seed; returns `{'rows', 'split', 'markdown',
  'plot'}`. The demonstrations go to `demos_dir` (default `workdir`), where seeds that share
  the split share them."""
  validate(config)
  start = time.perf_counter()
  data_dir = md.resolve_data_dir(config.data_dir or None).resolve()
  config = dataclasses.replace(config, data_dir=str(data_dir))
  os.makedirs(workdir, exist_ok=True)
  check_same_config(workdir, config, may_differ=_RESUMABLE)
  p = presets.driving(config.scale)
  methods = [METHODS[name] for name in config.methods]

  split_info = make_split(config, data_dir, workdir)
  train_dir, test_dir = split_info['train']['dir'], split_info['test']['dir']
  print(f'split: {len(split_info["train"]["files"])} train, '
        f'{len(split_info["test"]["files"])} test scenarios (test: '
        f'{_held_out_note(split_info["test"]["ids"])})')

  extra = extra_held_out(config, split_info, workdir)
  held_out = {'test': test_dir, **({'extra': extra['dir']} if extra else {})}

  needed = any(m.guide != 'none' for m in methods)
  dataset = extract_demos(train_dir, demos_dir or workdir, config.workers) if needed else ''
  results = run_all(methods, p, dataset, train_dir, held_out, workdir, config)

  rows = table_rows(results['test'])
  if extra:
    extra['rows'] = table_rows(results['extra'])
  plot = plot_trajectories(results['test'], split_info, config, workdir)
  markdown = write_report(rows, split_info, config, plot, workdir, time.perf_counter() - start,
                          extra)
  print(markdown)
  return {'rows': rows, 'split': split_info, 'markdown': markdown, 'plot': plot, 'extra': extra}
