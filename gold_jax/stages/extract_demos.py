r"""Turns the human ego logs of a ScenarioNet directory into MetaDrive demonstrations.

  python -m experiments.extract_waymo_demos --data_dir=$GOLD_WOMD_DIR --workdir=runs/womd_demos

The tracking controller of `gold_jax.driving.demos` drives each scenario's ego car along its
logged path. Writes, under the run directory: `episodes/<scenario>.npz` (one demonstration per
kept scenario, with the ego and logged paths and the tracking error), `reports/<scenario>.json`
(tracking error and outcome, or why it was dropped), `tracking_errors.csv`, `demos.npz` (the
kept episodes in the DSRL layout, in the order of the kept rows of the table), and with --plots
`plots/<scenario>.png` (log vs demonstrated path). Scenarios that already have a report are
skipped, so an interrupted run resumes where it stopped. Each worker process holds one
simulator (MetaDrive allows one per process).
"""

import dataclasses
import json
import multiprocessing
import pathlib
from typing import List

from absl import logging
import tqdm

from gold_jax import configs
from gold_jax import files
from gold_jax.driving import demos
from gold_jax.driving import plots
from gold_jax.envs import metadrive as md


@dataclasses.dataclass(frozen=True)
class Config:
  data_dir: str = ''  # ScenarioNet directory; '': $GOLD_WOMD_DIR.
  workers: int = 1  # Parallel processes (one simulator each).
  plots: bool = False  # Write a bird's-eye PNG per kept scenario.
  extract: demos.ExtractConfig = demos.ExtractConfig()  # What makes a demonstration usable.

  def __post_init__(self):
    configs.coerce(self)


def validate(config: Config) -> None:
  if config.workers < 1:
    raise ValueError(f'--workers must be at least 1, got {config.workers}')


_worker = {}


def _init_worker(data_dir, out, config, with_plots):
  _worker.update(env=demos.make_replay_env(data_dir), out=pathlib.Path(out), config=config,
                 plots=with_plots)


def _process(job):
  """Extracts one scenario in a worker; writes its episode, plot and report; returns the report."""
  index, path = job
  out = _worker['out']
  episode, report = demos.extract_scenario(_worker['env'], index, path, _worker['config'])
  stem = pathlib.Path(path).stem
  if episode is not None:
    demos.save_episode(out / 'episodes' / f'{stem}.npz', episode)
    if _worker['plots']:
      plots.plot_scenario(md.read_scenario(path), out / 'plots' / f'{stem}.png',
                          paths={'demonstration': episode['ego_xy']},
                          title=f'{report.scenario_id}: mean error {report.mean_error:.2f} m')
  files.write_json(out / 'reports' / f'{stem}.json', dataclasses.asdict(report), indent=1)
  return report


def extract_to_dir(data_dir, out, workers: int = 1, config=demos.ExtractConfig(),
                   with_plots: bool = False) -> List[demos.Report]:
  """Processes every scenario without a report yet; returns all reports, in index order."""
  out = pathlib.Path(out)
  for sub in ['episodes', 'reports'] + (['plots'] if with_plots else []):
    (out / sub).mkdir(parents=True, exist_ok=True)
  paths = md.scenario_files(data_dir)
  todo = [(i, str(p)) for i, p in enumerate(paths)
          if not (out / 'reports' / f'{p.stem}.json').exists()]
  logging.info('%d scenarios, %d already done', len(paths), len(paths) - len(todo))
  init = (str(data_dir), str(out), config, with_plots)
  if todo and workers > 1:
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(min(workers, len(todo)), _init_worker, init) as pool:
      for _ in tqdm.tqdm(pool.imap_unordered(_process, todo), total=len(todo), desc='scenarios'):
        pass
  elif todo:
    _init_worker(*init)
    try:
      for job in tqdm.tqdm(todo, desc='scenarios'):
        _process(job)
    finally:
      _worker.pop('env').close()
  reports = [demos.Report(**json.loads((out / 'reports' / f'{p.stem}.json').read_text()))
             for p in paths]
  kept = [r for r in reports if r.kept]
  if kept:
    episodes = [demos.load_episode(out / 'episodes' / f'{pathlib.Path(r.name).stem}.npz')
                for r in kept]
    demos.save_dataset(out / 'demos.npz', episodes)
  (out / 'tracking_errors.csv').write_text(format_table(reports, sep=','))
  return reports


def format_table(reports, sep: str = ' | ') -> str:
  """One line per scenario: id, kept, steps, tracking error, return, cost, outcome or reason."""
  rows = [('scenario', 'kept', 'steps', 'mean_err_m', 'max_err_m', 'reward', 'cost', 'success',
           'crash', 'out_of_road', 'reason')]
  for r in reports:
    rows.append((r.scenario_id or r.name, str(r.kept), str(r.steps), f'{r.mean_error:.3f}',
                 f'{r.max_error:.3f}', f'{r.reward:.2f}', f'{r.cost:.1f}', str(r.success),
                 str(r.crash), str(r.out_of_road), r.reason.replace(sep, ';')))
  return '\n'.join(sep.join(row) for row in rows) + '\n'


def run(config: Config, workdir: str) -> List[demos.Report]:
  """Extracts the demonstrations of `config.data_dir` into `workdir`; prints the table."""
  validate(config)
  data_dir = md.resolve_data_dir(config.data_dir or None)
  reports = extract_to_dir(data_dir, workdir, config.workers, config.extract, config.plots)
  print(format_table(reports))
  kept = sum(r.kept for r in reports)
  print(f'kept {kept} of {len(reports)} scenarios; dataset: '
        f'{pathlib.Path(workdir) / "demos.npz"}')
  return reports
