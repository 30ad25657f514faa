"""Throughput and latency of the learners on this machine.

Prints the dense f32 matmul rate (the reference peak), then for IQL, CVPO and SAC: updates/s
through `update_n` over `k` stacked batches, FLOPs per `update` from XLA's cost analysis, the
fraction of the matmul peak this reaches, parameter counts and the latency of one
deterministic action for a single observation; for the Decision Transformer: train steps/s,
FLOPs per step and the latency of one `act_context` decision. With several local devices (on a
CPU: `GOLD_JAX_CPU_DEVICES=2`) every learner is also timed data-parallel over all of them. A
learner that cannot be imported or run is reported as unavailable, so the script always
completes.

  python -m experiments.bench_learners --k=20 --json_out=bench.json
  GOLD_JAX_CPU_DEVICES=2 python -m experiments.bench_learners
"""

import importlib
import os
import time
import traceback
from typing import Any, Callable, Dict, Optional, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from gold_jax import files
from gold_jax import launch
from gold_jax import benchmarking
from gold_jax.benchmarking import (count_params, parse_overrides, segments, transitions,
                                   with_hidden, xla_flops)

MLP_LEARNERS = ('iql', 'cvpo', 'sac')



def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  kw = {'flag_values': fv}
  benchmarking.define_size_flags(fv)
  flags.DEFINE_integer('reps', 20, 'Timed update_n calls per learner (median taken).', **kw)
  flags.DEFINE_list('matmul_sizes', ['512', '1024', '2048'],
                    'Sides of the square f32 matmuls; the fastest rate is the peak.', **kw)
  flags.DEFINE_integer('matmul_reps', 10, 'Timed matmuls per size (fastest taken).', **kw)
  flags.DEFINE_integer('latency_calls', 500, 'Timed single decisions.', **kw)
  flags.DEFINE_list('learners', 'iql,cvpo,sac,dt', 'Learners to benchmark.', **kw)
  flags.DEFINE_integer('seed', 0, 'Seed of the parameters and the synthetic data.', **kw)


def _times(fn: Callable[[], Any], reps: int, warmup: int = 2) -> np.ndarray:
  """Wall times of `reps` calls of `fn()` (which must block until its result is ready)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return np.array(times)


def _median_seconds(fn: Callable[[], Any], reps: int, warmup: int = 2) -> float:
  return float(np.median(_times(fn, reps, warmup)))


def matmul_gflops(size: int, reps: int) -> float:
  """Peak dense f32 matmul rate in GFLOP/s (2 n^3 FLOPs per product), fastest of `reps`."""
  a, b = (jax.random.normal(k, (size, size), jnp.float32)
          for k in jax.random.split(jax.random.key(0)))
  matmul = jax.jit(jnp.matmul)
  seconds = float(np.min(_times(lambda: matmul(a, b).block_until_ready(), reps)))
  return 2.0 * size**3 / seconds / 1e9


def _block(tree) -> None:
  jax.tree.map(lambda x: x.block_until_ready() if hasattr(x, 'block_until_ready') else x,
               tree)


def time_update_n(update_n, state, batches, reps: int):
  """`(state, median seconds per update_n call, recompilations after the first call)`."""

  def step():
    nonlocal state
    state, metrics = update_n(state, batches)  # Donates the previous state.
    _block((state, metrics))

  step()  # Compiles.
  compiled = update_n._cache_size()
  seconds = _median_seconds(step, reps)
  return state, seconds, update_n._cache_size() - compiled


def data_parallel_rate(module, init_state: Callable[[], Any], batches, reps: int
                       ) -> Optional[Dict[str, Any]]:
  """Updates/s of `module.make_sharded_update` over every local device (None with one).

  The state is replicated and each stacked batch split on its batch axis, as
  `experiments/train_guide.py` trains the DT; on a CPU, `GOLD_JAX_CPU_DEVICES=2` gives two
  devices. The batch must split evenly.
  """
  devices = jax.local_devices()
  if len(devices) < 2 or jax.tree.leaves(batches)[0].shape[1] % len(devices):
    return None
  from gold_jax import parallel  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh(devices)
  _, seconds, recompiles = time_update_n(
      module.make_sharded_update(mesh), parallel.replicate(init_state(), mesh),
      parallel.shard_batch(batches, mesh, batch_axis=1), reps)
  k = jax.tree.leaves(batches)[0].shape[0]
  return {'updates_per_s': k / seconds, 'devices': len(devices), 'recompiles': recompiles}


def bench_mlp_learner(name: str, batch: int, hidden: int, obs_dim: int, act_dim: int, k: int,
                      reps: int, latency_calls: int, seed: int) -> Dict[str, Any]:
  module = importlib.import_module(f'gold_jax.agents.{name}')
  config = with_hidden(module.Config(), hidden)
  key_init, key_act = jax.random.split(jax.random.key(seed))
  state = module.init(key_init, obs_dim, act_dim, config)
  rng = np.random.default_rng(seed)
  batches = transitions(rng, (k, batch), obs_dim, act_dim)
  one_batch = jax.tree.map(lambda x: x[0], batches)
  flops = xla_flops(module.update, state, one_batch)

  state, seconds, recompiles = time_update_n(module.update_n, state, batches, reps)
  parallel = data_parallel_rate(
      module, lambda: module.init(key_init, obs_dim, act_dim, config), batches, reps)
  obs = rng.normal(size=(obs_dim,)).astype(np.float32)  # Host array, as from an env.
  latency = _median_seconds(
      lambda: module.act(state, obs, key_act, deterministic=True).block_until_ready(),
      latency_calls, warmup=5)
  return {
      'updates_per_s': k / seconds, 'update_n_seconds': seconds,
      'update_n_recompiles': recompiles,
      'flops_per_update': flops, 'params': count_params(state),
      'actor_params': count_params(state, ('actor_params', 'policy_params')),
      'act_latency_ms': latency * 1e3, 'data_parallel': parallel}


def bench_dt(batch: int, obs_dim: int, act_dim: int, k: int, reps: int, latency_calls: int,
             overrides: str, seed: int) -> Dict[str, Any]:
  from gold_jax.agents import dt
  config = parse_overrides(overrides, dt.Config())
  state = dt.init(jax.random.key(seed), obs_dim, act_dim, config)
  rng = np.random.default_rng(seed)
  windows = segments(rng, (k, batch), config.context_len, obs_dim, act_dim)
  flops = xla_flops(dt.update, state, jax.tree.map(lambda x: x[0], windows))

  state, seconds, recompiles = time_update_n(dt.update_n, state, windows, reps)
  parallel = data_parallel_rate(
      dt, lambda: dt.init(jax.random.key(seed), obs_dim, act_dim, config), windows, reps)
  obs = rng.normal(size=(obs_dim,)).astype(np.float32)
  ctx = dt.init_context(state, target_return=10.0)

  def decide():
    nonlocal ctx
    action, ctx = dt.act_context(state, ctx, obs)
    action.block_until_ready()

  latency = _median_seconds(decide, latency_calls, warmup=5)
  # One call for a vector env of 16 copies: what the guided collection loop pays per step.
  ctx16 = dt.init_context(state, target_return=10.0, n=16)
  obs16 = rng.normal(size=(16, obs_dim)).astype(np.float32)

  def decide16():
    nonlocal ctx16
    action, ctx16 = dt.act_context(state, ctx16, obs16)
    action.block_until_ready()

  latency16 = _median_seconds(decide16, max(latency_calls // 10, 5), warmup=3)
  act_flops = xla_flops(dt._act_context, state.params, state.obs_mean, state.obs_std,
                        dt.init_context(state, 10.0), obs)
  return {
      'train_steps_per_s': k / seconds, 'update_n_seconds': seconds, 'batch': batch,
      'update_n_recompiles': recompiles,
      'context_len': config.context_len, 'flops_per_update': flops,
      'params': count_params(state), 'act_latency_ms': latency * 1e3,
      'act_flops': act_flops, 'act16_latency_ms': latency16 * 1e3,
      'data_parallel': parallel}


def _unavailable(error: BaseException) -> Dict[str, str]:
  frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
  where = f' at {os.path.basename(frame.filename)}:{frame.lineno}' if frame else ''
  return {'unavailable': f'{type(error).__name__}: {error}{where}'}


def _fmt(value, spec: str) -> str:
  return 'n/a' if value is None else format(value, spec)


def run(batch: int = 256, hidden: int = 256, obs_dim: int = 60, act_dim: int = 2, k: int = 20,
        reps: int = 20, dt_batch: int = 64, dt_config: str = '',
        matmul_sizes: Sequence[int] = (512, 1024, 2048), matmul_reps: int = 10,
        latency_calls: int = 500,
        learners: Sequence[str] = ('iql', 'cvpo', 'sac', 'dt'), seed: int = 0,
        json_out: Optional[str] = None, log: Callable[[str], None] = print) -> Dict[str, Any]:
  """Runs every benchmark, prints one line per figure and returns them as a dict.

  The matmul peak is the fastest rate over `matmul_sizes`, measured before and after the
  learners (large products can be memory-bound, and other processes may load the machine at
  one moment), so it is the best dense rate seen during the run.
  """
  device = jax.devices()[0]
  results: Dict[str, Any] = {
      'device': f'{device.platform}:{device.device_kind}', 'cpu_count': os.cpu_count(),
      'jax': jax.__version__,
      'setup': dict(batch=batch, hidden=hidden, obs_dim=obs_dim, act_dim=act_dim, k=k,
                    reps=reps, dt_batch=dt_batch, dt_config=dt_config,
                    latency_calls=latency_calls)}
  log(f'device {results["device"]} ({results["cpu_count"]} CPUs), jax {jax.__version__}')
  def measure_peak(when: str) -> Dict[str, float]:
    rates = {str(n): matmul_gflops(int(n), matmul_reps) for n in matmul_sizes}
    log(f'matmul f32 ({when}): ' + ', '.join(f'{n}x{n} {r:.1f}' for n, r in rates.items())
        + ' GFLOP/s')
    return rates

  peaks = [measure_peak('before')]
  log(f'MLP learners: batch {batch}, hidden ({hidden}, {hidden}), obs {obs_dim}, '
      f'act {act_dim}, update_n over k={k}')
  for name in learners:
    try:
      if name == 'dt':
        r = bench_dt(dt_batch, obs_dim, act_dim, k, reps, latency_calls, dt_config, seed)
        log(f'dt: {r["train_steps_per_s"]:.2f} train steps/s (batch {r["batch"]} x K '
            f'{r["context_len"]}), {_fmt(r["flops_per_update"], ".3g")} FLOPs/step, '
            f'{r["params"]:,} params, act_context {r["act_latency_ms"]:.3f} ms '
            f'({_fmt(r["act_flops"], ".3g")} FLOPs), 16 envs in one call '
            f'{r["act16_latency_ms"]:.3f} ms ({r["act16_latency_ms"] / 16:.3f} ms each)')
      elif name in MLP_LEARNERS:
        r = bench_mlp_learner(name, batch, hidden, obs_dim, act_dim, k, reps, latency_calls,
                              seed)
        log(f'{name}: {r["updates_per_s"]:.1f} updates/s, '
            f'{_fmt(r["flops_per_update"], ".3g")} FLOPs/update, {r["params"]:,} params '
            f'(actor {r["actor_params"]:,}), act {r["act_latency_ms"]:.3f} ms')
      else:
        raise ValueError(f'unknown learner {name!r}; choose from {MLP_LEARNERS + ("dt",)}')
    except Exception as error:  # pylint: disable=broad-except
      r = _unavailable(error)
      log(f'{name}: unavailable: {r["unavailable"]}')
    results[name] = r
  peaks.append(measure_peak('after'))
  peak = results['matmul_gflops'] = max(max(p.values()) for p in peaks)
  results['matmul_gflops_by_size'] = dict(zip(('before', 'after'), peaks))
  log(f'matmul peak: {peak:.1f} GFLOP/s')
  for name in learners:
    r = results[name]
    rate = r.get('updates_per_s', r.get('train_steps_per_s'))
    if rate is not None and r.get('flops_per_update') is not None:
      r['achieved_gflops'] = r['flops_per_update'] * rate / 1e9
      r['peak_fraction'] = r['achieved_gflops'] / peak
      log(f'{name}: {r["achieved_gflops"]:.1f} GFLOP/s achieved = '
          f'{r["peak_fraction"]:.1%} of the matmul peak')
      parallel = r.get('data_parallel')
      if parallel is not None:  # The same FLOPs per update, shared by the devices.
        parallel['achieved_gflops'] = r['flops_per_update'] * parallel['updates_per_s'] / 1e9
        parallel['peak_fraction'] = parallel['achieved_gflops'] / peak
        log(f'{name}: data-parallel over {parallel["devices"]} devices '
            f'{parallel["updates_per_s"]:.2f} updates/s, {parallel["achieved_gflops"]:.1f} '
            f'GFLOP/s = {parallel["peak_fraction"]:.1%} of the matmul peak')
  dt_ms = results.get('dt', {}).get('act_latency_ms')
  mlp_ms = results.get('iql', {}).get('act_latency_ms')
  if dt_ms is not None and mlp_ms is not None:
    results['dt_over_mlp_latency'] = dt_ms / mlp_ms
    log(f'decision latency DT / MLP actor (iql): {dt_ms:.3f} / {mlp_ms:.3f} ms = '
        f'{dt_ms / mlp_ms:.1f}x')
  if json_out:
    files.write_json(json_out, results)
    log(f'wrote {json_out}')
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  try:
    matmul_sizes = [int(n) for n in f.matmul_sizes]
  except ValueError as e:
    raise app.UsageError(f'--matmul_sizes must be integers, got {f.matmul_sizes}') from e
  run(batch=f.batch, hidden=f.hidden, obs_dim=f.obs_dim, act_dim=f.act_dim, k=f.k, reps=f.reps,
      dt_batch=f.dt_batch, dt_config=f.dt_config, matmul_sizes=matmul_sizes,
      matmul_reps=f.matmul_reps, latency_calls=f.latency_calls, learners=f.learners,
      seed=f.seed, json_out=f.json_out)


if __name__ == '__main__':
  launch.run(main, define_flags)
