"""gold_jax.presets: every preset builds valid stage Configs for every benchmark task."""

import pytest

from gold_jax import envs, presets
from gold_jax.stages import collect, distill, train_guide
from gold_jax.studies import demo

BENCHMARK = ('Car-Circle', 'Car-Gather', 'Point-Goal', 'Point-Button', 'Point-Push',
             'Car-Goal', 'Car-Button', 'Car-Push')


@pytest.mark.parametrize('scale', presets.SCALES)
@pytest.mark.parametrize('task', BENCHMARK)
def test_stage_presets_make_valid_configs(scale, task):
  o = presets.stages(scale, task)
  assert set(o) == {'collect', 'guide', 'distill'}
  collect.validate(collect.Config(task=task, **o['collect']))
  train_guide.validate(train_guide.Config(task=task, dataset='d.hdf5', **o['guide']))
  distill.validate(distill.Config(task=task, guide='none', **o['distill']))
  if scale in ('laptop', 'long'):  # Ten evaluation points per online run, ten final episodes.
    assert o['distill']['total_steps'] // o['distill']['eval_every'] >= 10
    assert o['distill']['final_eval_episodes'] >= 10 and o['collect']['final_episodes'] >= 10


def test_nested_overrides_keep_the_stage_defaults():
  laptop = presets.stages('laptop', 'Car-Circle')
  config = distill.Config(task='Car-Circle', guide='none', **laptop['distill'])
  assert (config.loop.batch_size, config.loop.utd, config.loop.train_every) == (128, None, 50)
  assert config.schedule.stage_steps == 2_500 and config.schedule.kind == 'horizon'
  assert config.multiplier.rule == 'fixed' and config.multiplier.value == 2.0
  long = distill.Config(task='Car-Circle', guide='none',
                        **presets.stages('long', 'Car-Circle')['distill'])
  assert (long.total_steps, long.schedule.stage_steps, long.eval_every) == (
      200_000, 25_000, 10_000)
  assert long.loop == config.loop and long.multiplier == config.multiplier
  expert = collect.Config(task='Car-Circle', **laptop['collect'])
  assert (expert.loop.utd, expert.loop.batch_size, expert.multiplier.rule) == (4.0, 128, 'pid')


def test_the_demo_runs_the_laptop_preset():
  assert demo.budgets(demo.Config()) == presets.stages('laptop', 'Car-Circle')
  assert demo.budgets(demo.Config(scale='smoke')) == presets.stages('smoke', 'Car-Circle')


def test_unknown_scales_are_refused():
  with pytest.raises(ValueError, match='unknown scale'):
    presets.stages('huge', 'Car-Circle')
  with pytest.raises(ValueError, match='unknown scale'):
    presets.driving('huge')
  assert presets.driving('paper').dt_context_len == 20  # The paper's K.


def test_medium_driving_preset_runs_cvpo_at_the_fsrl_rate_and_keeps_the_student(monkeypatch):
  from gold_jax.stages import distill  # pylint: disable=import-outside-toplevel
  from gold_jax.studies import driving  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(driving, 'episode_len', lambda train_dir, extra_test_dir='': 90)
  medium = presets.driving('medium')
  assert medium.dt_context_len == 20 and medium.student_hidden_dims == (256, 256)
  assert medium.guide_steps[-1] == 0 and list(medium.guide_steps) == sorted(medium.guide_steps)[::-1]
  # The student acts alone for the last part of the run.
  assert medium.stage_steps * (len(medium.guide_steps) - 1) < medium.total_steps
  rates = {}
  for name in ('IQL', 'CVPO'):
    config = driving.online_config(driving.METHODS[name], medium, '', 'train', driving.Config())
    rates[name] = distill.loop_config(config).utd
    assert config.hidden_dims == (256, 256) and config.cvpo_preset == 'fsrl'
  assert rates == {'IQL': 1.0, 'CVPO': 0.2}
  assert envs.get_spec('Point-Goal').max_episode_steps == 1000
