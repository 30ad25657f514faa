"""Test-session settings: CPU JAX and a compilation cache shared by the test processes.

Many tests build learners with identical configurations; the persistent cache lets every
pytest-xdist worker reuse a program another one already compiled.
"""

import os
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), 'gold_jax_test_jax_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

from gold_jax import runtime  # pylint: disable=g-import-not-at-top,wrong-import-position

# The launchers' CPU settings (thread pool, synchronous dispatch), before JAX starts.
runtime.configure_cpu()
