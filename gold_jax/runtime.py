"""Process-wide JAX settings for CPU hosts; call `configure_cpu()` before JAX starts its backend.

Launchers (`experiments/__init__.py`) and the test suite call it. Library users who drive JAX
on a CPU from their own entry point can call it too; it changes nothing that they set first.

- A CPU thread pool larger than the core count (`PJRT_NPROC`): on machines with very few
  cores, jaxlib's CPU client can deadlock when two batched QR decompositions (orthogonal
  initialisation of twin critics) wait on its pool at once.
- Synchronous CPU dispatch (`jax_cpu_enable_async_dispatch=False`): the host env loop acts on
  one observation at a time and needs each result at once, so handing every tiny program to
  a worker thread only adds latency (a 2x256 MLP decision: about 70 µs asynchronous, 25 µs
  synchronous on a 2-core CPU; see `experiments/bench_learners.py`). Large programs are not
  slowed. `GOLD_JAX_CPU_ASYNC_DISPATCH=1` keeps JAX's default.
- `GOLD_JAX_CPU_DEVICES=N` splits the host into N CPU devices
  (`--xla_force_host_platform_device_count`). XLA:CPU runs small matrix products on one
  core, and each device runs on its own thread, so data-parallel DT training
  (`experiments/train_guide.py`) then keeps every core busy: on a 2-core CPU, N = 2 trains
  the released-size DT about 20% faster. Programs that are not sharded run on device 0 as
  before. Not set: one CPU device (JAX's default).
"""

import os


def configure_cpu() -> None:
  """Applies the settings above; has no effect on a backend that is already running."""
  os.environ.setdefault('PJRT_NPROC', str(max(8, os.cpu_count() or 1)))
  devices = os.environ.get('GOLD_JAX_CPU_DEVICES')
  xla_flags = os.environ.get('XLA_FLAGS', '')
  if devices and 'xla_force_host_platform_device_count' not in xla_flags:
    if not devices.isdigit() or int(devices) < 1:
      raise ValueError(f'GOLD_JAX_CPU_DEVICES must be a positive integer, got {devices!r}')
    flag = f'--xla_force_host_platform_device_count={devices}'
    os.environ['XLA_FLAGS'] = f'{xla_flags} {flag}'.strip()
  if os.environ.get('GOLD_JAX_CPU_ASYNC_DISPATCH', '0') != '1':
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_cpu_enable_async_dispatch', False)
