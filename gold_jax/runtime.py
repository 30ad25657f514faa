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
"""

import os


def configure_cpu() -> None:
  """Applies the settings above; has no effect on a backend that is already running."""
  os.environ.setdefault('PJRT_NPROC', str(max(8, os.cpu_count() or 1)))
  if os.environ.get('GOLD_JAX_CPU_ASYNC_DISPATCH', '0') != '1':
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_cpu_enable_async_dispatch', False)
