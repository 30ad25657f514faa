"""Synthetic learner inputs and XLA measurements shared by the benchmarks in `experiments/`."""

import dataclasses
from typing import Optional, Sequence

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from gold_jax.data.segments import Segment
from gold_jax.types import Transition


def xla_flops(jitted, *args) -> Optional[float]:
  """FLOPs of one call of a jitted function according to XLA's cost analysis."""
  analysis = jitted.lower(*args).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older JAX: one dict per device program.
    analysis = analysis[0] if analysis else {}
  flops = (analysis or {}).get('flops')
  return None if flops is None else float(flops)


def count_params(state, include: Sequence[str] = ('params',)) -> int:
  """Parameters in leaves whose path names one of `include`; optimiser and target copies
  are left out."""
  total = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    name = jax.tree_util.keystr(path)
    if any(word in name for word in include) and 'opt_state' not in name and (
        'target' not in name):
      total += int(np.prod(np.shape(leaf)))
  return total


def transitions(rng: np.random.Generator, shape, obs_dim: int, act_dim: int):
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  return Transition(
      obs=f32(rng.normal(size=(*shape, obs_dim))),
      action=f32(rng.uniform(-1, 1, size=(*shape, act_dim))),
      reward=f32(rng.normal(size=shape)),
      cost=f32(rng.random(shape) < 0.1),
      next_obs=f32(rng.normal(size=(*shape, obs_dim))),
      terminated=f32(rng.random(shape) < 0.01))


def segments(rng: np.random.Generator, shape, context_len: int, obs_dim: int, act_dim: int):
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  window = (*shape, context_len)
  return Segment(
      obs=f32(rng.normal(size=(*window, obs_dim))),
      action=f32(rng.uniform(-1, 1, size=(*window, act_dim))),
      rtg=f32(rng.uniform(0, 5, size=window)), ctg=f32(rng.uniform(0, 1, size=window)),
      timestep=jnp.broadcast_to(jnp.arange(context_len, dtype=jnp.int32), window),
      mask=jnp.ones(window, jnp.float32))


def with_hidden(config, hidden: int):
  if 'hidden_dims' in {f.name for f in dataclasses.fields(config)}:
    return dataclasses.replace(config, hidden_dims=(hidden, hidden))
  return config


def parse_overrides(text: str, config):
  """`"a=1,b=0.5"` -> `dataclasses.replace(config, a=1, b=0.5)`, typed like the defaults."""
  changes = {}
  for item in filter(None, (s.strip() for s in text.split(','))):
    name, _, value = item.partition('=')
    if not hasattr(config, name):
      raise ValueError(f'{type(config).__name__} has no field {name!r}')
    default = getattr(config, name)
    changes[name] = (value.lower() in ('1', 'true')) if isinstance(default, bool) else (
        type(default)(value) if default is not None else value)
  return dataclasses.replace(config, **changes)


def define_size_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  """The sizes of the synthetic learners and data (`bench_learners.py`, `bench_profile.py`)."""
  kw = {'flag_values': fv}
  flags.DEFINE_integer('batch', 256, 'Transitions per update of the MLP learners.', **kw)
  flags.DEFINE_integer('hidden', 256, 'Width of both hidden layers of the MLP learners.', **kw)
  flags.DEFINE_integer('obs_dim', 60, 'Observation size.', **kw)
  flags.DEFINE_integer('act_dim', 2, 'Action size.', **kw)
  flags.DEFINE_integer('k', 20, 'Updates fused into one update_n call.', **kw)
  flags.DEFINE_integer('dt_batch', 64, 'Windows per Decision Transformer update.', **kw)
  flags.DEFINE_string('dt_config', '', 'Overrides of the default DT config, e.g. '
                      '"embed_dim=16,num_layers=1".', **kw)
  flags.DEFINE_string('json_out', None, 'Also write the figures to this JSON file.', **kw)
