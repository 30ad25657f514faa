"""Helpers of the launcher tests: a launcher's flags, parsed for one block, then removed."""

import contextlib
import os
import subprocess
import sys
from typing import Callable, Iterator, Sequence

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def parsed_flags(define_flags: Callable[[], None], argv: Sequence[str]) -> Iterator[None]:
  """Defines a launcher's flags on the global `FLAGS`, parses `argv`; afterwards the flags
  are removed again, so the next test can define its launcher's flags of the same names."""
  before = set(flags.FLAGS)
  define_flags()
  try:
    flags.FLAGS(list(argv))
    yield
  finally:
    flags.FLAGS.unparse_flags()
    for name in set(flags.FLAGS) - before:
      delattr(flags.FLAGS, name)


def run_launcher(module: str, *args: str, env=None, timeout: float = 300
                 ) -> subprocess.CompletedProcess:
  """`python -m <module> <args>` from the repository root, on the CPU."""
  env = dict(os.environ if env is None else env, JAX_PLATFORMS='cpu')
  env.pop('GOLD_JAX_VERBOSE', None)
  return subprocess.run([sys.executable, '-m', module, *args], capture_output=True, text=True,
                        env=env, timeout=timeout, cwd=ROOT)
