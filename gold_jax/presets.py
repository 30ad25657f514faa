"""Budgets of every study at every scale, in one place.

Benchmark tasks (`gold_jax.studies.table1`, `gold_jax.studies.demo`): `stages(scale, task)`
gives the overrides of the three stage Configs at `'smoke'` (tests, seconds), `'laptop'` (a 2-core
CPU: about 15 minutes a seed on Car-Circle; the demo's `default` scale is this preset), `'long'`
(the laptop preset with 200k online env steps, for converged comparisons) or `'paper'` (the
stage Configs' own defaults, which follow the paper).

Driving (`gold_jax.studies.driving`): `driving(scale)` gives a `DrivingPreset` at `'smoke'`,
`'small'` or `'paper'`. `paper` is the setting of the GOLD authors' MetaDrive-Waymo runs for the
offline guide: a Decision Transformer with dropout 0.25, a 10k-step learning-rate warm-up,
batches of 512 windows, 90-step episodes (91 logged frames at 10 Hz), returns-to-go divided by
100 and conditioned on target returns 400 and 1000. The online part keeps the distillation
defaults (2x256 MLP student, utd 1, batch 256) with jump-start horizons that fit a 90-step
episode. `small` finishes in about a quarter of an hour on two CPU cores (a demonstration of the
pipeline, far from converged); `smoke` is the smallest setting that runs every stage (tests).
"""

import dataclasses
from typing import Any, Dict, Optional, Tuple

from gold_jax import configs, envs, scripted

SCALES = ('smoke', 'laptop', 'long', 'paper')


def stages(scale: str, task: str) -> Dict[str, Dict[str, Any]]:
  """Overrides of the stage Configs at `scale` for `task`: {'collect': ..., 'guide': ...,
  'distill': ...} (`gold_jax.stages.collect.Config`, `train_guide.Config`, `distill.Config`)."""
  spec = envs.get_spec(task)
  if scale == 'smoke':
    tiny = dict(max_episode_steps=20, progress=False)
    return {
        'collect': dict(tiny, expert_steps=200, loop=dict(learning_starts=100, batch_size=32),
                        hidden_dims=(16, 16), log_every=100, eval_episodes=2, episodes=3,
                        final_episodes=3, tensorboard=False),
        'guide': dict(tiny, steps=20, updates_per_call=10, batch_size=8, hidden_dims=(16, 16),
                      embed_dim=16, num_layers=1, context_len=5, warmup_steps=5,
                      eval_episodes=3, log_every=10, checkpoint_every=10, tensorboard=False),
        'distill': dict(tiny, total_steps=120,
                        schedule=dict(fractions=(0.5, 0.25, 0.0), stage_steps=40),
                        loop=dict(learning_starts=40, batch_size=16, train_every=20),
                        eval_every=60, eval_episodes=2, final_eval_episodes=3,
                        hidden_dims=(16, 16)),
    }
  if scale == 'laptop':  # About 15 CPU-minutes a seed on Car-Circle (the demo).
    length = spec.max_episode_steps
    # 1000-step tasks (safety-gymnasium): a longer expert run, and fewer episodes per curve
    # point so that the 10 curve points do not cost more env steps than training.
    long = length >= 1000
    # Tasks where SAC-Lagrangian finds no expert both safe and good at these budgets play a
    # scripted one (`gold_jax.scripted`; docs/results/experts/variants/).
    expert = 'scripted' if spec.name in scripted.PRESET_TASKS else 'sac'
    return {
        'collect': dict(expert=expert, expert_steps=60_000 if long else 40_000,
                        hidden_dims=(64, 64),
                        loop=dict(batch_size=128, utd=4.0, learning_starts=2_000),
                        log_every=10_000 if long else 4_000, episodes=20,
                        eval_every=10_000 if long else 5_000, eval_episodes=5 if long else 10,
                        final_episodes=10, progress=False, tensorboard=False),
        'guide': dict(steps=2_000, updates_per_call=100, embed_dim=64, num_layers=2,
                      context_len=10, target_quantile=1.0, eval_episodes=10, log_every=200,
                      checkpoint_every=1_000, progress=False, tensorboard=False),
        'distill': dict(total_steps=20_000,
                        schedule=dict(stage_steps=2_500),  # Default curriculum: (5/6 ... 0) T.
                        loop=dict(batch_size=128, learning_starts=1_000),
                        multiplier=dict(value=2.0), eval_every=2_000,
                        eval_episodes=2 if long else 5, final_eval_episodes=10, progress=False),
    }
  if scale == 'long':  # The laptop preset run 10x longer: does from scratch catch up?
    laptop = stages('laptop', task)
    # The curriculum keeps the laptop's shape (the guide acts during the first 5/8 of
    # training, the paper's 200k of 300k is 2/3), 20 curve points.
    return dict(laptop, distill=configs.merge(
        laptop['distill'], total_steps=200_000, schedule=dict(stage_steps=25_000),
        eval_every=10_000))
  if scale == 'paper':  # The launchers' own defaults follow the paper.
    return {'collect': dict(progress=False), 'guide': dict(progress=False),
            'distill': dict(progress=False)}
  raise ValueError(f'unknown scale {scale!r}; expected one of {SCALES}')


# -- Driving --------------------------------------------------------------------------------------

DRIVING_SCALES = ('smoke', 'small', 'medium', 'paper')


@dataclasses.dataclass(frozen=True)
class DrivingPreset:
  """Everything the scale changes; the defaults are the paper's."""
  # -- Decision Transformer guide.
  dt_steps: int = 100_000  # Gradient updates.
  dt_batch_size: int = 512  # Windows per update.
  dt_warmup_steps: int = 10_000  # Linear learning-rate warm-up.
  dt_dropout_rate: float = 0.25  # Dropout in the transformer while training.
  dt_return_scale: float = 100.0  # Returns-to-go are divided by this.
  dt_target_returns: Tuple[float, ...] = (400.0, 1000.0)  # Conditioning returns evaluated; the
                                                          # first one guides the student. Empty:
                                                          # the best demonstration's return.
  dt_embed_dim: int = 128  # Token width.
  dt_num_layers: int = 3  # Transformer blocks.
  dt_num_heads: int = 1  # Attention heads.
  dt_context_len: int = 20  # K, steps per window.
  # -- Behaviour-cloning guide.
  bc_steps: int = 100_000  # Gradient updates.
  bc_batch_size: int = 256  # Transitions per update.
  bc_hidden_dims: Tuple[int, ...] = (256, 256)  # Policy MLP.
  guide_updates_per_call: int = 100  # Updates fused into one `update_n` call.
  # -- Online distillation (GOLD) and the from-scratch baselines.
  total_steps: int = 300_000  # Env steps of online training per method.
  guide_steps: Tuple[int, ...] = (80, 60, 40, 20, 0)  # Jump-start horizons H1 > ... > 0.
  stage_steps: int = 40_000  # Env steps per horizon stage.
  learning_starts: int = 1_000  # Env steps before the first update.
  train_every: int = 50  # Env steps between fused update calls.
  utd: Optional[float] = 1.0  # Updates per env step; None: 1 for IQL, the CVPO preset's rate.
  cvpo_preset: str = 'released'  # CVPO's hyperparameters (gold_jax.agents.cvpo.PRESETS).
  batch_size: int = 256  # Transitions per update.
  replay_capacity: int = 1_000_000  # Replay buffer size.
  eval_every: int = 10_000  # Env steps between evaluations on the training scenarios.
  eval_episodes: int = 2  # Episodes per such evaluation (each its own process: keep small).
  student_hidden_dims: Tuple[int, ...] = (256, 256)  # The 2x256 MLP student.
  cost_coef: float = 1.0  # IQL: lambda of the shaped reward r - lambda c.


_DRIVING = {
    'paper': DrivingPreset(),
    'small': DrivingPreset(
        dt_steps=600, dt_batch_size=64, dt_warmup_steps=100, dt_target_returns=(),
        dt_embed_dim=64, dt_num_layers=2, dt_context_len=10,
        bc_steps=1_000, bc_batch_size=128, guide_updates_per_call=100,
        total_steps=1_000, guide_steps=(60, 30, 0), stage_steps=300, learning_starts=200,
        train_every=50, batch_size=128, replay_capacity=1_000, eval_every=1_000,
        eval_episodes=1),
    # A corpus of a few hundred scenarios (issue-sized: 3 seeds x 5 online methods on 2 cores in
    # about an hour): a K = 20 DT of width 64, 6k online env steps per run (horizons 4/5 ... 0
    # of the 90-step episode, the student alone for the last 2k), CVPO at the FSRL preset
    # (0.2 updates per env step, 128-128 critics) so that it costs what IQL costs per env step.
    'medium': DrivingPreset(
        dt_steps=5_000, dt_batch_size=64, dt_warmup_steps=500, dt_target_returns=(),
        dt_embed_dim=64, dt_num_layers=2, dt_context_len=20,
        bc_steps=5_000, bc_batch_size=256, guide_updates_per_call=100,
        total_steps=6_000, guide_steps=(72, 54, 36, 18, 0), stage_steps=1_000,
        learning_starts=500, train_every=50, utd=None, cvpo_preset='fsrl', batch_size=256,
        replay_capacity=6_000, eval_every=6_000, eval_episodes=2),
    'smoke': DrivingPreset(
        dt_steps=20, dt_batch_size=8, dt_warmup_steps=5, dt_target_returns=(),
        dt_embed_dim=16, dt_num_layers=1, dt_context_len=4,
        bc_steps=20, bc_batch_size=16, bc_hidden_dims=(16, 16), guide_updates_per_call=10,
        total_steps=40, guide_steps=(20, 0), stage_steps=20, learning_starts=20,
        train_every=10, batch_size=8, replay_capacity=40, eval_every=40, eval_episodes=1,
        student_hidden_dims=(16, 16)),
}


def driving(scale: str) -> DrivingPreset:
  """The `DrivingPreset` of `scale` ('smoke', 'small', 'medium' or 'paper')."""
  if scale not in _DRIVING:
    raise ValueError(f'unknown scale {scale!r}; expected one of {DRIVING_SCALES}')
  return _DRIVING[scale]
