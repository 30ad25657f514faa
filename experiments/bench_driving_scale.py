r"""What driving at scale costs: corpus generation, demonstration extraction, online replay.

  python -m experiments.bench_driving_scale --scenarios=16 --online_steps=2000 \
      --workdir=runs/bench_driving_scale

On a fresh corpus of `--scenarios` recorded MetaDrive scenarios (91 frames, seed 0) it measures,
each in a launcher subprocess as a user would run it:
1. generation, scenarios per minute with 1 and with 2 workers (`experiments.generate_corpus`);
2. demonstration extraction from the ego logs with 1 and 2 workers
   (`experiments.extract_waymo_demos`);
3. online training on replay: env steps per second of IQL from scratch on the corpus
   (`experiments.distill`, the 2x256 student, 1 update per env step from step 500), the loop's own
   figure (`training/env_steps_per_sec`, evaluations excluded).
It prints the figures and what a paper-scale run (10k train and 1k held-out scenarios, five
online methods x 3 seeds x 300k env steps) would take at these rates on this machine; with
`--json_out` it also writes them. Memory over many episodes: `experiments.bench_driving_memory`.
"""

import csv
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List

from absl import app
from absl import flags

from gold_jax import files
from gold_jax import launch

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = {'train': 10_000, 'test': 1_000, 'online_steps': 300_000, 'online_runs': 5 * 3}


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  kw = {'flag_values': fv}
  flags.DEFINE_integer('scenarios', 16, 'Scenarios generated (and extracted) per measurement.',
                       **kw)
  flags.DEFINE_integer('online_steps', 2000, 'Env steps of the online measurement.', **kw)
  flags.DEFINE_string('workdir', 'runs/bench_driving_scale', 'Scratch directory.', **kw)
  flags.DEFINE_string('json_out', '', 'Also write the figures here.', **kw)


def _launch(module: str, *args: str) -> float:
  """Runs `python -m module args` and returns its wall-clock seconds; raises on failure."""
  start = time.perf_counter()
  result = subprocess.run([sys.executable, '-m', module, *args], capture_output=True, text=True,
                          cwd=_REPO)
  if result.returncode != 0:
    raise RuntimeError(f'{module} failed:\n{result.stderr[-3000:]}')
  return time.perf_counter() - start


def _generation(workdir: str, scenarios: int, workers: int) -> Dict[str, Any]:
  out = os.path.join(workdir, f'corpus_w{workers}')
  _launch('experiments.generate_corpus', f'--out_dir={out}', f'--num_scenarios={scenarios}',
          f'--workers={workers}', '--noprogress')
  with open(os.path.join(out, 'corpus_report.json')) as f:
    report = json.load(f)
  return {'dir': out, 'written': report['written'], 'seconds': report['seconds'],
          'per_minute': report['scenarios_per_minute']}


def _extraction(workdir: str, corpus: str, written: int, workers: int) -> Dict[str, Any]:
  seconds = _launch('experiments.extract_waymo_demos', f'--data_dir={corpus}',
                    f'--workdir={os.path.join(workdir, f"demos_w{workers}")}',
                    f'--workers={workers}')
  return {'seconds': seconds, 'per_minute': 60.0 * written / seconds}


def _online(workdir: str, corpus: str, steps: int) -> Dict[str, Any]:
  run = os.path.join(workdir, 'online')
  _launch('experiments.distill', '--task=MetaDrive-Waymo', '--guide=none', '--backbone=iql',
          f'--total_steps={steps}', f'--eval_every={steps}', '--eval_episodes=1',
          '--final_eval_episodes=1', '--loop.learning_starts=500', f'--env_options={json.dumps({"data_dir": corpus})}',
          '--noprogress', f'--workdir={run}')
  with open(os.path.join(run, 'metrics.csv')) as f:
    rows = [r for r in csv.DictReader(f) if r.get('training/env_steps_per_sec')]
  rate = float(rows[-1]['training/env_steps_per_sec'])
  return {'env_steps_per_sec': rate, 'ms_per_env_step': 1000.0 / rate}


def measure(scenarios: int, online_steps: int, workdir: str) -> Dict[str, Any]:
  os.makedirs(workdir, exist_ok=True)
  result: Dict[str, Any] = {'scenarios': scenarios, 'cpus': os.cpu_count()}
  for workers in (1, 2):
    result[f'generation_w{workers}'] = _generation(workdir, scenarios, workers)
  corpus = result['generation_w2']['dir']
  written = result['generation_w2']['written']
  for workers in (1, 2):
    result[f'extraction_w{workers}'] = _extraction(workdir, corpus, written, workers)
  result['online'] = _online(workdir, corpus, online_steps)
  result['paper_scale'] = projection(result)
  return result


def projection(result: Dict[str, Any]) -> Dict[str, float]:
  """Hours a paper-scale run would take at the measured rates (2 workers where measured)."""
  n = PAPER['train'] + PAPER['test']
  online_hours = (PAPER['online_steps'] * PAPER['online_runs']
                  / result['online']['env_steps_per_sec'] / 3600.0)
  return {'generation_hours': n / result['generation_w2']['per_minute'] / 60.0,
          'extraction_hours': PAPER['train'] / result['extraction_w2']['per_minute'] / 60.0,
          'online_hours_one_process': online_hours}


def lines(result: Dict[str, Any]) -> List[str]:
  g1, g2 = result['generation_w1'], result['generation_w2']
  e1, e2 = result['extraction_w1'], result['extraction_w2']
  p = result['paper_scale']
  return [
      f'{result["scenarios"]} scenarios, {result["cpus"]} CPUs',
      f'generation: {g1["per_minute"]:.1f} scenarios/min (1 worker), '
      f'{g2["per_minute"]:.1f} (2 workers); {g2["written"]} kept',
      f'extraction: {e1["per_minute"]:.1f} scenarios/min (1 worker), '
      f'{e2["per_minute"]:.1f} (2 workers)',
      f'online IQL on replay: {result["online"]["env_steps_per_sec"]:.1f} env steps/s '
      f'({result["online"]["ms_per_env_step"]:.1f} ms per step)',
      f'paper scale ({PAPER["train"]} + {PAPER["test"]} scenarios, {PAPER["online_runs"]} '
      f'online runs of {PAPER["online_steps"]} steps): generation {p["generation_hours"]:.1f} h, '
      f'extraction {p["extraction_hours"]:.1f} h, online {p["online_hours_one_process"]:.0f} h '
      'in one process']


def main(argv):
  del argv
  f = flags.FLAGS
  result = measure(f.scenarios, f.online_steps, f.workdir)
  print('\n'.join(lines(result)))
  if f.json_out:
    files.write_json(f.json_out, result, indent=1)


if __name__ == '__main__':
  launch.run(main, define_flags)
