"""Speed of a PyTorch Decision Transformer of the same size as the JAX one, on this machine.

The speed target of the JAX Decision Transformer (`gold_jax.agents.dt`) is stated relative to a
PyTorch DT of the same size, so this script builds that reference in plain PyTorch and times it:
train steps/s (median over timed chunks of `--steps` updates on random windows, after a
warm-up) and the latency of one decision, a forward pass of a K-step window in eval mode under
`torch.inference_mode`, for one window and for 16 at once (median over `--latency_calls`).

The model is the GOLD guide's: per step the tokens (return-to-go, obs, action), K=20 steps, a
timestep embedding (table of 1000) added to every token and no positional embedding, embedding
LayerNorm, 3 pre-LayerNorm GPT blocks (width 128, 1 head, GELU MLP of 512, dropout 0.1), causal
and left-padding masks, final LayerNorm and a tanh action head at the observation tokens;
trained by the masked MSE of the actions with AdamW (lr 1e-4 after a linear warm-up, weight
decay 1e-4) and a 0.25 gradient-norm clip, batch 64. Every block runs at every token, as in the
original Decision Transformer. It imports nothing from this repository, so it runs in an
environment with PyTorch and without JAX:

  pip install absl-py numpy
  pip install torch --index-url https://download.pytorch.org/whl/cpu
  python experiments/bench_torch_dt.py --steps=20 --json_out=bench_torch_dt.json

Compare with `python -m experiments.bench_learners --learners=dt`.
"""

import dataclasses
import json
import os
import time
from typing import Any, Callable, Dict, Optional

from absl import app
from absl import flags
import numpy as np

try:
  import torch
  from torch import nn
  from torch.nn import functional as F
except ImportError:
  torch = nn = F = None

INSTALL_HINT = ('PyTorch is not installed; install it with '
                '`pip install torch --index-url https://download.pytorch.org/whl/cpu`.')

_Module = object if nn is None else nn.Module


@dataclasses.dataclass(frozen=True)
class Config:
  """The defaults of `gold_jax.agents.dt.Config` (the released GOLD guide)."""
  embed_dim: int = 128
  num_layers: int = 3
  num_heads: int = 1
  mlp_dim: int = 512
  dropout_rate: float = 0.1
  context_len: int = 20
  max_timestep: int = 1000
  learning_rate: float = 1e-4
  weight_decay: float = 1e-4
  warmup_steps: int = 10000
  grad_clip: float = 0.25


def _linear(fan_in: int, fan_out: int) -> 'nn.Linear':
  layer = nn.Linear(fan_in, fan_out)
  nn.init.normal_(layer.weight, std=0.02)
  nn.init.zeros_(layer.bias)
  return layer


def _layer_norm(width: int) -> 'nn.LayerNorm':
  return nn.LayerNorm(width, eps=1e-6)  # Flax's epsilon.


class Block(_Module):
  """Pre-LayerNorm GPT block: x + attention(LN(x)); x + MLP(LN(x))."""

  def __init__(self, config: Config):
    super().__init__()
    e = config.embed_dim
    self.heads, self.dropout_rate = config.num_heads, config.dropout_rate
    self.ln_attention, self.ln_mlp = _layer_norm(e), _layer_norm(e)
    self.query, self.key, self.value, self.out = (_linear(e, e) for _ in range(4))
    self.mlp_in, self.mlp_out = _linear(e, config.mlp_dim), _linear(config.mlp_dim, e)
    self.dropout = nn.Dropout(config.dropout_rate)

  def forward(self, x: 'torch.Tensor', bias: 'torch.Tensor') -> 'torch.Tensor':
    """x (B, L, E); bias (B, 1, L, L), 0 where attention is allowed, very negative elsewhere."""
    batch, length, width = x.shape
    h = self.ln_attention(x)
    split = lambda t: t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)
    h = F.scaled_dot_product_attention(
        split(self.query(h)), split(self.key(h)), split(self.value(h)), attn_mask=bias,
        dropout_p=self.dropout_rate if self.training else 0.0)
    x = x + self.dropout(self.out(h.transpose(1, 2).reshape(batch, length, width)))
    h = F.gelu(self.mlp_in(self.ln_mlp(x)), approximate='tanh')
    return x + self.dropout(self.mlp_out(h))


class DecisionTransformer(_Module):
  """Maps K-step windows to actions in [-1, 1] at every step, (B, K, act_dim)."""

  def __init__(self, obs_dim: int, act_dim: int, config: Config = Config()):
    super().__init__()
    e = config.embed_dim
    self.max_timestep = config.max_timestep
    self.embed_time = nn.Embedding(config.max_timestep, e)
    nn.init.normal_(self.embed_time.weight, std=0.02)
    self.embed_return, self.embed_obs = _linear(1, e), _linear(obs_dim, e)
    self.embed_action = _linear(act_dim, e)
    self.embed_ln, self.final_ln = _layer_norm(e), _layer_norm(e)
    self.dropout = nn.Dropout(config.dropout_rate)
    self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
    self.action_head = _linear(e, act_dim)
    self.register_buffer('obs_mean', torch.zeros(obs_dim))
    self.register_buffer('obs_std', torch.ones(obs_dim))

  def forward(self, obs: 'torch.Tensor', action: 'torch.Tensor', rtg: 'torch.Tensor',
              timestep: 'torch.Tensor', mask: 'torch.Tensor') -> 'torch.Tensor':
    """obs (B, K, obs_dim), action (B, K, act_dim), rtg/mask (B, K) float, timestep (B, K)."""
    batch, steps = rtg.shape
    time_embedding = self.embed_time(timestep.clamp(0, self.max_timestep - 1))
    obs = (obs - self.obs_mean) / self.obs_std
    tokens = (self.embed_return(rtg[..., None]), self.embed_obs(obs), self.embed_action(action))
    # (B, K, 3, E) -> (B, 3K, E): R_1, s_1, a_1, R_2, ...
    x = torch.stack([t + time_embedding for t in tokens], dim=2).reshape(batch, 3 * steps, -1)
    x = self.dropout(self.embed_ln(x))
    valid = mask.repeat_interleave(3, dim=1) > 0
    length = 3 * steps
    causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
    allowed = causal & valid[:, None, None, :]  # (B, 1, L, L): causal, valid keys.
    bias = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(
        ~allowed, torch.finfo(x.dtype).min)
    for block in self.blocks:
      x = block(x, bias)
    x = self.final_ln(x).reshape(batch, steps, 3, -1)[:, :, 1]  # The observation tokens.
    return torch.tanh(self.action_head(x))


def action_loss(predicted: 'torch.Tensor', target: 'torch.Tensor',
                mask: 'torch.Tensor') -> 'torch.Tensor':
  """Mean squared action error over the valid (mask 1) steps and the action dimensions."""
  squared = ((predicted - target) ** 2).sum(-1)
  return (squared * mask).sum() / (mask.sum().clamp(min=1.0) * target.shape[-1])


def num_params(model: 'nn.Module') -> int:
  return sum(p.numel() for p in model.parameters())


def random_windows(rng: np.random.Generator, batch: int, context_len: int, obs_dim: int,
                   act_dim: int) -> Dict[str, 'torch.Tensor']:
  """Random training windows like `bench_learners`' (all steps valid)."""
  window = (batch, context_len)
  f32 = lambda x: torch.from_numpy(np.asarray(x, np.float32))
  return {
      'obs': f32(rng.normal(size=(*window, obs_dim))),
      'action': f32(rng.uniform(-1, 1, size=(*window, act_dim))),
      'rtg': f32(rng.uniform(0, 5, size=window)),
      'timestep': torch.arange(context_len).expand(window).contiguous(),
      'mask': torch.ones(window)}


def make_train_step(model: 'nn.Module', config: Config) -> Callable[[Dict[str, Any]], float]:
  """One AdamW update (gradient clip, linear learning-rate warm-up) per call on a batch."""
  optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                weight_decay=config.weight_decay)
  warmup = max(config.warmup_steps, 1)
  schedule = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                               lambda step: min((step + 1) / warmup, 1.0))

  def train_step(batch: Dict[str, Any]) -> float:
    model.train()
    predicted = model(batch['obs'], batch['action'], batch['rtg'], batch['timestep'],
                      batch['mask'])
    loss = action_loss(predicted, batch['action'], batch['mask'])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    schedule.step()
    return loss.item()

  return train_step


def decision_latency(model: 'nn.Module', window: Dict[str, Any], calls: int,
                     warmup: int = 5) -> float:
  """Median seconds of one eval-mode forward pass of `window`, reading the last action."""
  model.eval()
  times = []
  with torch.inference_mode():
    for i in range(warmup + calls):
      start = time.perf_counter()
      action = model(window['obs'], window['action'], window['rtg'], window['timestep'],
                     window['mask'])[:, -1]
      action.numpy()
      if i >= warmup:
        times.append(time.perf_counter() - start)
  return float(np.median(times))


def run(steps: int = 20, chunks: int = 5, warmup: int = 5, latency_calls: int = 500,
        batch: int = 64, obs_dim: int = 60, act_dim: int = 2, config: Config = Config(),
        seed: int = 0, json_out: Optional[str] = None,
        log: Callable[[str], None] = print) -> Dict[str, Any]:
  """Runs the benchmark, prints one line per figure and returns them as a dict."""
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  results: Dict[str, Any] = {
      'torch': torch.__version__, 'cpu_count': os.cpu_count(),
      'threads': torch.get_num_threads(),
      'setup': dict(steps=steps, chunks=chunks, warmup=warmup, latency_calls=latency_calls,
                    batch=batch, obs_dim=obs_dim, act_dim=act_dim,
                    config=dataclasses.asdict(config))}
  log(f'torch {torch.__version__}, {results["threads"]} threads ({os.cpu_count()} CPUs)')
  model = DecisionTransformer(obs_dim, act_dim, config)
  results['params'] = num_params(model)
  log(f'torch dt: {results["params"]:,} params (embed {config.embed_dim}, '
      f'{config.num_layers} layers, {config.num_heads} head(s), mlp {config.mlp_dim}, '
      f'K {config.context_len})')

  train_step = make_train_step(model, config)
  batches = [random_windows(rng, batch, config.context_len, obs_dim, act_dim)
             for _ in range(max(steps, 1))]
  for i in range(warmup):
    train_step(batches[i % len(batches)])
  chunk_seconds, loss = [], None
  for _ in range(chunks):
    start = time.perf_counter()
    for i in range(steps):
      loss = train_step(batches[i % len(batches)])
    chunk_seconds.append(time.perf_counter() - start)
  seconds = float(np.median(chunk_seconds))
  results.update(train_steps_per_s=steps / seconds, chunk_seconds=chunk_seconds,
                 final_loss=loss)
  log(f'torch dt: {results["train_steps_per_s"]:.2f} train steps/s (batch {batch} x K '
      f'{config.context_len}, median of {chunks} chunks of {steps} steps)')

  for size in (1, 16):
    window = random_windows(rng, size, config.context_len, obs_dim, act_dim)
    results[f'latency{size}_ms'] = decision_latency(model, window, latency_calls) * 1e3
  log(f'torch dt: decision latency {results["latency1_ms"]:.3f} ms (batch 1), '
      f'{results["latency16_ms"]:.3f} ms (batch 16, {results["latency16_ms"] / 16:.3f} ms '
      f'each), median of {latency_calls} calls')
  if json_out:
    os.makedirs(os.path.dirname(os.path.abspath(json_out)), exist_ok=True)
    with open(json_out, 'w') as f:
      json.dump(results, f, indent=2)
    log(f'wrote {json_out}')
  return results


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  kw = {'flag_values': fv}
  flags.DEFINE_integer('steps', 20, 'Train steps per timed chunk.', **kw)
  flags.DEFINE_integer('chunks', 5, 'Timed chunks of train steps (median taken).', **kw)
  flags.DEFINE_integer('warmup', 5, 'Untimed train steps before the first chunk.', **kw)
  flags.DEFINE_integer('latency_calls', 500, 'Timed decisions per batch size.', **kw)
  flags.DEFINE_integer('batch', 64, 'Windows per train step.', **kw)
  flags.DEFINE_integer('obs_dim', 60, 'Observation size.', **kw)
  flags.DEFINE_integer('act_dim', 2, 'Action size.', **kw)
  flags.DEFINE_integer('seed', 0, 'Seed of the parameters and the synthetic data.', **kw)
  flags.DEFINE_string('json_out', None, 'Also write the figures to this JSON file.', **kw)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if torch is None:
    print(INSTALL_HINT)
    return
  f = flags.FLAGS
  run(steps=f.steps, chunks=f.chunks, warmup=f.warmup, latency_calls=f.latency_calls,
      batch=f.batch, obs_dim=f.obs_dim, act_dim=f.act_dim, seed=f.seed, json_out=f.json_out)


if __name__ == '__main__':
  define_flags()
  app.run(main)
