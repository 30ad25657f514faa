"""Launchers (absl flags) and benchmarks.

Importing this package applies the CPU runtime settings of `gold_jax.runtime.configure_cpu`
(a larger CPU thread pool, synchronous CPU dispatch) before any launcher starts JAX.
"""

from gold_jax import runtime

runtime.configure_cpu()
