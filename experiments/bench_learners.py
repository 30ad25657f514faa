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

import dataclasses
import importlib
import json
import os
import time
import traceback
from typing import Any, Callable, Dict, Optional, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

MLP_LEARNERS = ('iql', 'cvpo', 'sac')

_BATCH = flags.DEFINE_integer('batch', 256, 'Transitions per update of the MLP learners.')
_HIDDEN = flags.DEFINE_integer('hidden', 256, 'Width of both hidden layers of the MLP learners.')
_OBS_DIM = flags.DEFINE_integer('obs_dim', 60, 'Observation size.')
_ACT_DIM = flags.DEFINE_integer('act_dim', 2, 'Action size.')
_K = flags.DEFINE_integer('k', 20, 'Updates fused into one update_n call.')
_REPS = flags.DEFINE_integer('reps', 20, 'Timed update_n calls per learner (median taken).')
_DT_BATCH = flags.DEFINE_integer('dt_batch', 64, 'Windows per Decision Transformer update.')
_DT_CONFIG = flags.DEFINE_string(
    'dt_config', '', 'Overrides of the default DT config, e.g. "embed_dim=16,num_layers=1".')
_MATMUL_SIZES = flags.DEFINE_list(
    'matmul_sizes', ['512', '1024', '2048'],
    'Sides of the square f32 matmuls; the fastest rate is the peak.')
_MATMUL_REPS = flags.DEFINE_integer('matmul_reps', 10, 'Timed matmuls per size (fastest taken).')
_LATENCY_CALLS = flags.DEFINE_integer('latency_calls', 500, 'Timed single decisions.')
_LEARNERS = flags.DEFINE_list('learners', 'iql,cvpo,sac,dt', 'Learners to benchmark.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the parameters and the synthetic data.')
_JSON_OUT = flags.DEFINE_string('json_out', None, 'Also write the figures to this JSON file.')


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


def xla_flops(jitted, *args) -> Optional[float]:
  """FLOPs of one call of a jitted function according to XLA's cost analysis."""
  analysis = jitted.lower(*args).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older JAX: one dict per device program.
    analysis = analysis[0] if analysis else {}
  flops = (analysis or {}).get('flops')
  return None if flops is None else float(flops)


def count_params(state, include: Sequence[str] = ('params',)) -> int:
  """Parameters in leaves whose path names one of `include`; optimiser and target copies
  are left out."""
  total = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    name = jax.tree_util.keystr(path)
    if any(word in name for word in include) and 'opt_state' not in name and (
        'target' not in name):
      total += int(np.prod(np.shape(leaf)))
  return total


def _block(tree) -> None:
  jax.tree.map(lambda x: x.block_until_ready() if hasattr(x, 'block_until_ready') else x,
               tree)


def transitions(rng: np.random.Generator, shape, obs_dim: int, act_dim: int):
  from gold_jax.types import Transition
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  return Transition(
      obs=f32(rng.normal(size=(*shape, obs_dim))),
      action=f32(rng.uniform(-1, 1, size=(*shape, act_dim))),
      reward=f32(rng.normal(size=shape)),
      cost=f32(rng.random(shape) < 0.1),
      next_obs=f32(rng.normal(size=(*shape, obs_dim))),
      terminated=f32(rng.random(shape) < 0.01))


def segments(rng: np.random.Generator, shape, context_len: int, obs_dim: int, act_dim: int):
  from gold_jax.data.segments import Segment
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  window = (*shape, context_len)
  return Segment(
      obs=f32(rng.normal(size=(*window, obs_dim))),
      action=f32(rng.uniform(-1, 1, size=(*window, act_dim))),
      rtg=f32(rng.uniform(0, 5, size=window)), ctg=f32(rng.uniform(0, 1, size=window)),
      timestep=jnp.broadcast_to(jnp.arange(context_len, dtype=jnp.int32), window),
      mask=jnp.ones(window, jnp.float32))


def with_hidden(config, hidden: int):
  if 'hidden_dims' in {f.name for f in dataclasses.fields(config)}:
    return dataclasses.replace(config, hidden_dims=(hidden, hidden))
  return config


def parse_overrides(text: str, config):
  """`"a=1,b=0.5"` -> `dataclasses.replace(config, a=1, b=0.5)`, typed like the defaults."""
  changes = {}
  for item in filter(None, (s.strip() for s in text.split(','))):
    name, _, value = item.partition('=')
    if not hasattr(config, name):
      raise ValueError(f'{type(config).__name__} has no field {name!r}')
    default = getattr(config, name)
    changes[name] = (value.lower() in ('1', 'true')) if isinstance(default, bool) else (
        type(default)(value) if default is not None else value)
  return dataclasses.replace(config, **changes)


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
        matmul_sizes: Sequence[int] = (512, 1024, 2048), matmul_reps: int = 10, latency_calls: int = 500,
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
    os.makedirs(os.path.dirname(os.path.abspath(json_out)), exist_ok=True)
    with open(json_out, 'w') as f:
      json.dump(results, f, indent=2)
    log(f'wrote {json_out}')
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  run(batch=_BATCH.value, hidden=_HIDDEN.value, obs_dim=_OBS_DIM.value, act_dim=_ACT_DIM.value,
      k=_K.value, reps=_REPS.value, dt_batch=_DT_BATCH.value, dt_config=_DT_CONFIG.value,
      matmul_sizes=[int(n) for n in _MATMUL_SIZES.value], matmul_reps=_MATMUL_REPS.value,
      latency_calls=_LATENCY_CALLS.value, learners=_LEARNERS.value, seed=_SEED.value,
      json_out=_JSON_OUT.value)


if __name__ == '__main__':
  app.run(main)
