"""The evaluation protocol: which episodes train, demonstrate, validate and evaluate.

For a task and a seed every method (the expert, BC, DT and every online learner) is scored on
the same evaluation episodes, and the episodes of each role are disjoint:

| role | reset seeds of episode i (seed k) | used for |
|---|---|---|
| training | below 10^9: the loop resets with k·1_000_003 + step | online learning |
| evaluation | 1_000_000_000 + 1_000_000 k + i | the numbers a table reports, and curve points |
| demonstration | 2_000_000_000 + 1_000_000 k + i | the expert's recorded demonstrations |
| validation | 3_000_000_000 + 1_000_000 k + i | anything chosen during training: the expert's |
|  |  | best checkpoint, the `auto` curriculum's advance |

A vector env resets copy j with `seed + j`, and `evaluation.run_episodes` plays episode i with
reset seed `seed + i`, so an episode list is fully given by its first seed. Intermediate curve
points use the first `n` evaluation episodes; the final evaluation uses at least
`MIN_FINAL_EPISODES` of them.

Recorded-scenario tasks (MetaDrive-Waymo) evaluate every held-out scenario once, never a
training one: there the evaluation set is the list of held-out scenarios (ids: their file names;
played by their index in the held-out env), and `for_task` builds it from the evaluation env's
options (`data_dir`, `start_scenario_index`, `num_scenarios`).

An `EvalSet` names such a list. Its `id` (8 hex digits of a sha256 over the task, the episode
length and the ordered reset seeds or scenario ids) goes into every result row, so anyone can
check that the cells of a table row were scored on the same episodes.
"""

import dataclasses
import hashlib
import json
from typing import Optional, Sequence, Tuple

# First reset seed of each role for seed 0; seed k adds `SEED_STRIDE * k`. The ranges are
# disjoint for up to SEED_STRIDE episodes per role and 100 seeds, stay above the training
# resets and below 2^32 (the largest seed every simulator accepts).
EVALUATION_BASE = 1_000_000_000
DEMONSTRATION_BASE = 2_000_000_000
VALIDATION_BASE = 3_000_000_000
SEED_STRIDE = 1_000_000
# Version of this protocol, saved in every run's config: a run directory scored under another
# version is refused rather than mixed with new results.
VERSION = 2
MIN_FINAL_EPISODES = 10  # Episodes of the final evaluation on the benchmark tasks.
ROLES = {'evaluation': EVALUATION_BASE, 'demonstration': DEMONSTRATION_BASE,
         'validation': VALIDATION_BASE}


def first_seed(role: str, seed: int) -> int:
  """Reset seed of episode 0 of `role` ('evaluation', 'demonstration', 'validation')."""
  if role not in ROLES:
    raise ValueError(f'unknown episode role {role!r}; expected one of {tuple(ROLES)}')
  if not 0 <= seed < 100:
    raise ValueError(f'the protocol covers seeds 0..99, got {seed}')
  return ROLES[role] + SEED_STRIDE * int(seed)


def evaluation_seed(seed: int) -> int:
  """First reset seed of the evaluation episodes of run seed `seed`."""
  return first_seed('evaluation', seed)


def validation_seed(seed: int) -> int:
  """First reset seed of the validation episodes of run seed `seed`."""
  return first_seed('validation', seed)


def demonstration_seed(seed: int) -> int:
  """First reset seed of the demonstration episodes of run seed `seed`."""
  return first_seed('demonstration', seed)


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """An ordered list of evaluation episodes: reset seeds, or scenario ids of recorded data."""
  task: str
  episode_len: int
  reset_seeds: Tuple[int, ...] = ()
  scenarios: Tuple[str, ...] = ()  # Scenario ids (file names) of recorded-scenario tasks.
  scenario_indices: Tuple[int, ...] = ()  # Their `scenario_index` in the evaluation env.

  @property
  def episodes(self) -> int:
    return len(self.scenarios) or len(self.reset_seeds)

  @property
  def id(self) -> str:
    """First 8 hex digits of a sha256 over the task, the length and the ordered episodes."""
    payload = json.dumps([self.task, int(self.episode_len), [int(s) for s in self.reset_seeds],
                          [str(s) for s in self.scenarios]])
    return hashlib.sha256(payload.encode()).hexdigest()[:8]


def eval_set(task: str, episode_len: int, seed: int, episodes: int,
             scenarios: Optional[Sequence[str]] = None,
             scenario_indices: Optional[Sequence[int]] = None) -> EvalSet:
  """The evaluation episodes of `task` for run seed `seed`: `episodes` reset seeds from
  `evaluation_seed(seed)` on, or, for recorded scenarios, the held-out `scenarios` in order
  (with their `scenario_indices` in the evaluation env)."""
  if scenarios:
    indices = tuple(int(i) for i in (scenario_indices if scenario_indices is not None
                                     else range(len(scenarios))))
    if len(indices) != len(scenarios):
      raise ValueError(f'{len(scenarios)} scenarios but {len(indices)} scenario indices')
    return EvalSet(task, int(episode_len), scenarios=tuple(str(s) for s in scenarios),
                   scenario_indices=indices)
  if episodes <= 0:
    raise ValueError(f'an evaluation set needs at least one episode, got {episodes}')
  start = evaluation_seed(seed)
  return EvalSet(task, int(episode_len), reset_seeds=tuple(range(start, start + episodes)))


def is_recorded(task: str) -> bool:
  """Whether `task` replays recorded scenarios (evaluated on held-out scenarios)."""
  from gold_jax import envs  # pylint: disable=import-outside-toplevel
  spec = envs.get_spec(task)
  return spec.simulator == envs.registry.METADRIVE and spec.sim_id == 'ScenarioEnv'


def for_task(task: str, episode_len: int, seed: int, episodes: int,
             env_options: Optional[dict] = None) -> EvalSet:
  """The evaluation set of a run: reset seeds, or every scenario of the evaluation env's
  options (`data_dir` or $GOLD_WOMD_DIR, `start_scenario_index`, `num_scenarios`) once."""
  if not is_recorded(task):
    return eval_set(task, episode_len, seed, episodes)
  from gold_jax.envs import metadrive as md  # pylint: disable=import-outside-toplevel
  options = dict(env_options or {})
  files = md.scenario_files(md.resolve_data_dir(options.get('data_dir')))
  start = int(options.get('start_scenario_index', 0))
  num = options.get('num_scenarios')
  stop = len(files) if num is None else start + int(num)
  if not 0 <= start < stop <= len(files):
    raise ValueError(f'evaluation scenarios [{start}, {stop}) are not in the {len(files)} '
                     'scenarios of the data directory')
  indices = range(start, stop)
  return eval_set(task, episode_len, seed, 0, [files[i].name for i in indices], indices)
