"""Where the time of one learner call goes, op by op (XLA's compiled ops, from a JAX trace).

Runs a jitted call under `jax.profiler.trace`, reads the per-op events of the trace and maps
each op back to the compiled HLO: whether it computes a matrix product, and the source
operation it came from (e.g. `block_0/MlpBlock_0/Dense_0/dot_general`). Prints the wall time
per call (median of untraced calls), the summed op time per traced call (its ratio to the wall
time is how many ops ran at once), the share of op time in matrix products and their FLOP
rate per second of op time, the op time grouped by source module, and the slowest ops. The
sizes are the flags of `gold_jax.benchmarking.define_size_flags` (`--k`, `--batch`, `--hidden`,
`--dt_batch`, `--dt_config`, `--obs_dim`, `--act_dim`, `--json_out`). Targets:

  iql, cvpo, sac      one `update_n` of `--k` fused updates (batch 256, 2x256 MLPs)
  dt                  one Decision Transformer train step (batch 64 x K 20)
  dt_act              one single-environment `act_context` decision

  python -m experiments.bench_profile --target=dt --top=20
  python -m experiments.bench_profile --target=iql --json_out=iql_ops.json

The trace adds a little overhead to every op, so the op times are a little high.
Backends whose traces carry no per-op events (some plugins) are reported as such.
"""

import collections
import dataclasses
import glob
import gzip
import importlib
import json
import os
import re
import tempfile
import time
from typing import Any, Callable, Dict, List

from absl import app
from absl import flags
import jax
import numpy as np

from gold_jax import benchmarking
from gold_jax import launch
from gold_jax.files import write_json

TARGETS = ('iql', 'cvpo', 'sac', 'dt', 'dt_act')
# Source-path parts of control flow (scan bodies), not of modules.
_CONTROL_FLOW = ('while', 'body', 'cond', 'closed_call', 'checkpoint', 'remat')



@dataclasses.dataclass
class Target:
  call: Callable[[], Any]  # Runs one call; returns its (unblocked) outputs.
  compiled_hlo: Callable[[], str]  # The optimised HLO of the program `call` runs.
  flops: Callable[[], float]  # FLOPs of one call (XLA's cost analysis; k updates for update_n).


def build(target: str, k: int = 20, batch: int = 256, hidden: int = 256, dt_batch: int = 64,
          dt_config: str = '', obs_dim: int = 60, act_dim: int = 2) -> Target:
  """The call to profile, on synthetic data of the benchmark's sizes."""
  if target not in TARGETS:
    raise ValueError(f'target must be one of {TARGETS}, got {target!r}')
  rng = np.random.default_rng(0)
  if target in ('iql', 'cvpo', 'sac'):
    module = importlib.import_module(f'gold_jax.agents.{target}')
    config = benchmarking.with_hidden(module.Config(), hidden)
    data = benchmarking.transitions(rng, (k, batch), obs_dim, act_dim)
    state = module.init(jax.random.key(0), obs_dim, act_dim, config)
  else:
    from gold_jax.agents import dt  # pylint: disable=g-import-not-at-top
    config = benchmarking.parse_overrides(dt_config, dt.Config())
    state = dt.init(jax.random.key(0), obs_dim, act_dim, config)
    if target == 'dt_act':
      obs = rng.normal(size=(obs_dim,)).astype(np.float32)
      holder = {'ctx': dt.init_context(state, target_return=10.0)}

      def act():
        action, holder['ctx'] = dt.act_context(state, holder['ctx'], obs)
        return action
      act_fn = dt._act_context  # pylint: disable=protected-access
      args = lambda: (state.params, state.obs_mean, state.obs_std, holder['ctx'], obs)
      return Target(act, lambda: act_fn.lower(*args()).compile().as_text(),
                    lambda: benchmarking.xla_flops(act_fn, *args()))
    module = dt
    data = benchmarking.segments(rng, (1, dt_batch), config.context_len, obs_dim, act_dim)
  holder = {'state': state}

  def update():
    holder['state'], metrics = module.update_n(holder['state'], data)  # Donates the state.
    return holder['state'], metrics
  one = jax.tree.map(lambda x: x[0], data)
  steps = jax.tree.leaves(data)[0].shape[0]
  return Target(update, lambda: module.update_n.lower(holder['state'], data).compile().as_text(),
                lambda: steps * benchmarking.xla_flops(module.update, holder['state'], one))


def _hlo_ops(hlo: str) -> Dict[str, Dict[str, Any]]:
  """For every instruction of the compiled HLO: whether it computes a matrix product (a dot,
  or a fusion whose computation holds one), whether it is control flow, and its source."""
  bodies: Dict[str, str] = {}
  for match in re.finditer(r'^(?:%)?([\w.-]+) [^\n]*\{\n(.*?)^\}', hlo, re.M | re.S):
    bodies[match.group(1)] = match.group(2)
  ops = {}
  for match in re.finditer(r'^\s*(?:ROOT )?%?([\w.-]+) = [^\n]*', hlo, re.M):
    name, line = match.group(1), match.group(0)
    called = re.search(r'calls=%?([\w.-]+)', line)
    is_dot = bool(re.search(r'\b(dot|convolution)\(', line)) or bool(
        called and re.search(r'\b(dot|convolution)\(', bodies.get(called.group(1), '')))
    # A fusion without its own source names that of the first op inside it that has one.
    source = re.search(r'op_name="([^"]*)"', line) or (
        called and re.search(r'op_name="([^"]*)"', bodies.get(called.group(1), '')))
    # Control flow (a scan's while, a cond) spans the ops of its bodies, which are traced too.
    container = bool(re.search(r'\s(while|conditional|call)\(', line))
    ops[name] = {'matmul': is_dot and not container, 'container': container,
                 'source': source.group(1) if source else ''}
  return ops


def _group(source: str) -> str:
  """`jit(f)/transpose(jvp(Model))/block_0/MlpBlock_0/Dense_0/dot_general` -> the module path
  without the transformation wrappers and the primitive: `block_0/MlpBlock_0/Dense_0`."""
  parts = [re.sub(r'^(?:\w+\()+', '', p).rstrip(')') for p in source.split('/')
           if p and not p.startswith('jit(')]
  parts = [p for p in parts if p not in _CONTROL_FLOW]
  return '/'.join(parts[:-1]) or (parts[-1] if parts else '(no source)')


def _trace_events(directory: str) -> List[Dict[str, Any]]:
  files = glob.glob(os.path.join(directory, '**', '*.trace.json.gz'), recursive=True)
  if not files:
    return []
  with gzip.open(max(files, key=os.path.getmtime)) as f:
    return [e for e in json.load(f).get('traceEvents', []) if e.get('ph') == 'X']


def profile(target: Target, calls: int = 5) -> Dict[str, Any]:
  """Wall time per call and per-op time of `calls` traced calls, mapped onto the HLO."""
  for _ in range(2):
    jax.block_until_ready(target.call())
  hlo = _hlo_ops(target.compiled_hlo())
  flops = target.flops()
  times = []
  for _ in range(calls):  # Untraced: the trace itself slows each call down a little.
    start = time.perf_counter()
    jax.block_until_ready(target.call())
    times.append(time.perf_counter() - start)
  wall = float(np.median(times))
  with tempfile.TemporaryDirectory() as directory:
    with jax.profiler.trace(directory, create_perfetto_trace=True):
      for _ in range(calls):
        jax.block_until_ready(target.call())
    events = _trace_events(directory)
  per_op = collections.defaultdict(float)
  for event in events:
    name = event.get('name', '')
    if name in hlo and not hlo[name]['container']:  # Runtime events have no HLO name.
      per_op[name] += float(event.get('dur', 0.0)) * 1e-6 / calls
  op_time = sum(per_op.values())
  matmul = sum(t for name, t in per_op.items() if hlo[name]['matmul'])
  groups = collections.defaultdict(float)
  for name, t in per_op.items():
    groups[_group(hlo[name]['source'])] += t
  slowest = sorted(per_op.items(), key=lambda item: -item[1])
  return {
      'wall_s': wall, 'op_s': op_time, 'ops_per_call': len(per_op), 'flops': flops,
      'gflops': flops / wall / 1e9 if flops else None,
      'matmul_gflops_per_op_second': flops / matmul / 1e9 if flops and matmul else None,
      'concurrency': op_time / wall if wall else float('nan'),
      'matmul_share': matmul / op_time if op_time else float('nan'),
      'groups': dict(sorted(groups.items(), key=lambda item: -item[1])),
      'slowest': [{'op': name, 'seconds': t, 'matmul': hlo[name]['matmul'],
                   'source': hlo[name]['source']} for name, t in slowest]}


def report(result: Dict[str, Any], top: int, log: Callable[[str], None] = print) -> None:
  if not result['ops_per_call']:
    log('the trace holds no per-op events for this backend; nothing to attribute')
    return
  log(f'wall {result["wall_s"] * 1e3:.3f} ms per call; op time {result["op_s"] * 1e3:.3f} ms '
      f'over {result["ops_per_call"]} ops ({result["concurrency"]:.2f} ops at once on average)')
  log(f'matrix products: {result["matmul_share"]:.1%} of op time')
  if result['gflops']:
    matmul_rate = result['matmul_gflops_per_op_second']
    log(f'{result["flops"] / 1e9:.3f} GFLOP per call: {result["gflops"]:.1f} GFLOP/s of wall '
        'time, ' + (f'{matmul_rate:.1f} GFLOP per second of matrix-product op time'
                    if matmul_rate is not None else 'no op recognised as a matrix product'))
  log('op time by source:')
  for group, seconds in list(result['groups'].items())[:top]:
    log(f'  {seconds * 1e3:9.3f} ms  {seconds / result["op_s"]:6.1%}  {group}')
  log('slowest ops:')
  for op in result['slowest'][:top]:
    kind = 'matmul' if op['matmul'] else 'other '
    log(f'  {op["seconds"] * 1e3:9.3f} ms  {kind}  {op["op"]:<28s} {_group(op["source"])}')


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  kw = {'flag_values': fv}
  benchmarking.define_size_flags(fv)
  flags.DEFINE_enum('target', 'iql', TARGETS, 'What to profile.', **kw)
  flags.DEFINE_integer('calls', 20, 'Calls timed untraced (median), then as many traced '
                       '(after two warm-ups).', **kw)
  flags.DEFINE_integer('top', 15, 'Slowest ops and source groups to print.', **kw)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  if f.calls < 1:
    raise app.UsageError('--calls must be >= 1')
  target = build(f.target, k=f.k, batch=f.batch, hidden=f.hidden, dt_batch=f.dt_batch,
                 dt_config=f.dt_config, obs_dim=f.obs_dim, act_dim=f.act_dim)
  result = profile(target, f.calls)
  print(f'{f.target} on {jax.devices()[0].device_kind}:')
  report(result, f.top)
  if f.json_out:
    write_json(f.json_out, result, indent=1)


if __name__ == '__main__':
  launch.run(main, define_flags)
