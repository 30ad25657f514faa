"""Safe-RL simulators behind one interface (see `docs/api.md`, Environments).

`make(task, seed=0, **options)` returns a `SafeEnv`; `make_vec(task, n, ...)` a `SafeVecEnv`;
`list_tasks()` names the tasks of `registry.TASKS`. Simulators are imported only when an env
of their family is made.
"""



def _drop_adroit_notice() -> None:
  """Importing gymnasium loads the gymnasium-robotics plugin, which prints a notice about its
  Adroit hand tasks (none of ours) on every import, once per process; drop it beforehand."""
  try:
    from farama_notifications import notifications  # pylint: disable=g-import-not-at-top
    notifications.pop('gymnasium_robotics', None)
  except Exception:  # pylint: disable=broad-except  # Optional package: nothing to drop.
    pass


_drop_adroit_notice()

# pylint: disable=g-import-not-at-top,wrong-import-position
from gold_jax.envs.core import SafeEnv, TaskSpec, validate_action
from gold_jax.envs.registry import TASKS, get_spec, list_tasks, make
from gold_jax.envs.vector import SafeVecEnv, make_vec

__all__ = ['SafeEnv', 'SafeVecEnv', 'TASKS', 'TaskSpec', 'get_spec', 'list_tasks', 'make',
           'make_vec', 'validate_action']
