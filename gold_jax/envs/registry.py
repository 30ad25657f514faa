"""The task table of the paper (Table I) and `make`.

| task            | simulator         | simulator id          | steps | kappa | success |
|-----------------|-------------------|-----------------------|-------|-------|---------|
| Car-Circle      | bullet_safety_gym | SafetyCarCircle-v0    | 300   | 10    | no      |
| Car-Gather      | bullet_safety_gym | SafetyCarGather-v0    | 500   | 2     | yes     |
| Point-Goal      | safety_gymnasium  | SafetyPointGoal1-v0   | 1000  | 25    | no      |
| Point-Button    | safety_gymnasium  | SafetyPointButton1-v0 | 1000  | 25    | no      |
| Point-Push      | safety_gymnasium  | SafetyPointPush1-v0   | 1000  | 25    | no      |
| Car-Goal        | safety_gymnasium  | SafetyCarGoal1-v0     | 1000  | 25    | no      |
| Car-Button      | safety_gymnasium  | SafetyCarButton1-v0   | 1000  | 25    | no      |
| Car-Push        | safety_gymnasium  | SafetyCarPush1-v0     | 1000  | 25    | no      |
| MetaDrive-Waymo | metadrive         | ScenarioEnv           | 90    | 10    | yes     |
| MetaDrive-Safe  | metadrive         | SafeMetaDriveEnv      | 1000  | 10    | yes     |

Episode lengths are the simulators' own time limits (bullet-safety-gym registers 300 steps for
Circle and 500 for Gather; safety-gymnasium 1000); a Waymo scenario has 91 frames, i.e. 90
steps. Cost thresholds kappa (episode cost budgets used for reporting):
* safety-gymnasium: 25, the usual Safety Gym budget.
* Car-Circle: 10, the tightest of the thresholds (10, 20, 40) OSRL/DSRL evaluate on the
  300-step bullet Circle tasks.
* Car-Gather: 2. Its cost is one per bomb touched (8 bombs, each counts once), so an episode
  costs at most about 8 and a budget of 10 or more would never bind.
* MetaDrive: 10 (cost 1 per step of crash or leaving the road).
Success: Car-Gather collects every apple; MetaDrive reaches the destination
(`info["arrive_dest"]`). The safety-gymnasium tasks resample their goal when it is met and
never end early, so they define no success (goals met show up as `info["goal_met"]`).

`make` also accepts a simulator id: the ids above map to their task, and any other flat-vector
safety-gymnasium (`Safety<Robot><Task><Level>-v0`) or bullet-safety-gym
(`Safety<Agent><Task>-v0`) id gets a spec with the simulator's own episode length, kappa 25
(safety-gymnasium) or 10 (bullet) and no success.
"""

import dataclasses
import re
from typing import Dict, List

from gold_jax.envs.core import SafeEnv, TaskSpec
from gold_jax.errors import TaskError

SAFETY_GYMNASIUM = 'safety_gymnasium'
BULLET = 'bullet_safety_gym'
METADRIVE = 'metadrive'


def _table() -> Dict[str, TaskSpec]:
  specs = [
      TaskSpec('Car-Circle', 'SafetyCarCircle-v0', BULLET, 300, 10.0, False),
      TaskSpec('Car-Gather', 'SafetyCarGather-v0', BULLET, 500, 2.0, True),
  ]
  for robot in ('Point', 'Car'):
    for task in ('Goal', 'Button', 'Push'):
      specs.append(TaskSpec(f'{robot}-{task}', f'Safety{robot}{task}1-v0', SAFETY_GYMNASIUM,
                            1000, 25.0, False))
  specs += [
      TaskSpec('MetaDrive-Waymo', 'ScenarioEnv', METADRIVE, 90, 10.0, True),
      TaskSpec('MetaDrive-Safe', 'SafeMetaDriveEnv', METADRIVE, 1000, 10.0, True),
  ]
  return {spec.name: spec for spec in specs}


TASKS: Dict[str, TaskSpec] = _table()

# `make_metadrive(kind, ...)` kinds of the MetaDrive simulator ids.
_METADRIVE_KINDS = {'ScenarioEnv': 'waymo', 'SafeMetaDriveEnv': 'safe'}

_SAFETY_GYMNASIUM_ID = re.compile(r'Safety(Point|Car|Racecar|Doggo|Ant)[A-Z][a-z]+\d-v\d+')
_BULLET_ID = re.compile(r'Safety(Ball|Car|Drone|Ant)(Reach|Push|Circle|Run|Gather)-v\d+')


def list_tasks() -> List[str]:
  """The task names of the table, in the paper's order."""
  return list(TASKS)


def get_spec(task: str) -> TaskSpec:
  """Resolves a task name or simulator id to its `TaskSpec`.

  Raises:
    TaskError (a ValueError): unknown task; the message lists the known ones.
  """
  if not isinstance(task, str):
    raise TaskError(f'task must be a string, got {type(task).__name__}')
  if task in TASKS:
    return TASKS[task]
  for spec in TASKS.values():
    if task == spec.sim_id:
      return spec
  if _SAFETY_GYMNASIUM_ID.fullmatch(task):
    return TaskSpec(task, task, SAFETY_GYMNASIUM, None, 25.0, False)
  if _BULLET_ID.fullmatch(task):
    return TaskSpec(task, task, BULLET, None, 10.0, False)
  raise TaskError(f'unknown task {task!r}; known tasks: {", ".join(TASKS)} (or a '
                  'safety-gymnasium / bullet-safety-gym id such as SafetyPointGoal1-v0)',
                  hint='pass one of the known task names, e.g. --task=Car-Circle')


def make(task: str, seed: int = 0, **options) -> SafeEnv:
  """Builds the env of `task` (a name from `TASKS` or a simulator id).

  Args:
    task: e.g. 'Car-Circle' or 'SafetyCarCircle-v0'.
    seed: seed of the first `reset()` (and of `action_space.sample()`).
    **options: passed to the simulator's constructor (`safety_gymnasium.make`,
      `gymnasium.make`, or `make_metadrive`). `max_episode_steps=N` also changes the spec's
      episode length (it is passed on as well; as `horizon` for MetaDrive).
  """
  spec = get_spec(task)
  if 'max_episode_steps' in options:
    spec = dataclasses.replace(spec, max_episode_steps=int(options['max_episode_steps']))
    if spec.simulator == METADRIVE:
      options.setdefault('horizon', options.pop('max_episode_steps'))
  if spec.simulator == SAFETY_GYMNASIUM:
    from gold_jax.envs.safety_gym import SafetyGymEnv  # pylint: disable=import-outside-toplevel
    return SafetyGymEnv(spec, seed, **options)
  if spec.simulator == BULLET:
    from gold_jax.envs.bullet import BulletEnv  # pylint: disable=import-outside-toplevel
    return BulletEnv(spec, seed, **options)
  return _make_metadrive(spec, seed, **options)


def _make_metadrive(spec: TaskSpec, seed: int, **options) -> SafeEnv:
  """MetaDrive through `gold_jax.envs.metadrive.make_metadrive`, imported only here.

  Cost is `info["cost"]`, success `info["arrive_dest"]`; `reset(seed)` reseeds the choice of
  scenario (map).
  """
  from gold_jax.envs.core import GymnasiumSafeEnv  # pylint: disable=import-outside-toplevel
  from gold_jax.envs.metadrive import make_metadrive  # pylint: disable=import-outside-toplevel
  env = make_metadrive(_METADRIVE_KINDS[spec.sim_id], seed=seed, **options)
  # Recorded scenarios are replayed to their own length: the episode length of an env over a
  # corpus is its longest scenario's (90 steps for WOMD's 91 frames, 199 for 200-frame logs).
  if getattr(env, 'max_episode_steps', None):
    spec = dataclasses.replace(spec, max_episode_steps=int(env.max_episode_steps))
  return GymnasiumSafeEnv(env, spec, seed, cost_key='cost', success_key='arrive_dest')
