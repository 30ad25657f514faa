"""GPT-2 style causal transformer and the Decision Transformer built on it (Chen et al., 2021).

The Decision Transformer reads, for each step t of a K-step window, the tokens
(R_t, s_t, a_t), or (R_t, C_t, s_t, a_t) with `use_cost_token`, where R_t is the return-to-go
and C_t the cost-to-go. Every token of step t gets the embedding of the episode timestep t added
(there is no positional embedding). The action a_t is predicted from the output at the s_t
token, which by causality sees everything up to s_t but not a_t.
"""

import dataclasses
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from gold_jax.networks.dropout import HashDropout
from gold_jax.networks.precision import dot_general_for

_init = nn.initializers.normal(stddev=0.02)
DROPOUT_IMPLS = ('hash', 'threefry')


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Hyper-parameters of the Decision Transformer (defaults: the released GOLD guide)."""
  act_dim: int  # Size of the action.
  embed_dim: int = 128  # Width of every token.
  num_layers: int = 3  # Transformer blocks.
  num_heads: int = 1  # Attention heads per block.
  mlp_dim: int = 512  # Hidden width of the GELU MLP in every block.
  dropout_rate: float = 0.1  # Dropout on embeddings, residual branches and attention weights.
  max_timestep: int = 1000  # Size of the timestep embedding table; later steps use the last.
  use_cost_token: bool = False  # Adds a cost-to-go token per step (4 tokens instead of 3).
  # 'bfloat16': dense layers and attention projections multiply bfloat16-rounded inputs with
  # float32 sums (`gold_jax.networks.precision`); everything else stays float32.
  matmul_dtype: str = 'float32'
  # Masks of the token dropout (embeddings, residual branches): 'hash' derives them from a
  # counter hash (`gold_jax.networks.dropout`, cheap on CPUs); 'threefry' is flax's
  # `nn.Dropout`. Attention-weight dropout is flax's either way (one mask per call).
  dropout_impl: str = 'hash'

  def __post_init__(self):
    if self.dropout_impl not in DROPOUT_IMPLS:
      raise ValueError(f'dropout_impl must be one of {DROPOUT_IMPLS}, got {self.dropout_impl!r}')

  def dot_general(self):
    """The dense layers' `dot_general` for `matmul_dtype` (None: flax's float32 default)."""
    return dot_general_for(self.matmul_dtype)

  def dropout(self) -> nn.Module:
    return (HashDropout if self.dropout_impl == 'hash' else nn.Dropout)(self.dropout_rate)

  @property
  def tokens_per_step(self) -> int:
    return 4 if self.use_cost_token else 3


class MlpBlock(nn.Module):
  """Dense -> GELU -> Dense -> dropout."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x: jax.Array, training: bool) -> jax.Array:
    cfg = self.config
    dot_general = cfg.dot_general()
    x = nn.Dense(cfg.mlp_dim, kernel_init=_init, dot_general=dot_general)(x)
    x = nn.gelu(x)
    x = nn.Dense(cfg.embed_dim, kernel_init=_init, dot_general=dot_general)(x)
    return cfg.dropout()(x, deterministic=not training)


class TransformerBlock(nn.Module):
  """Pre-LayerNorm block: x + attention(LN(x)); x + MLP(LN(x)).

  With `select`, only the tokens `select(x)` query the attention (all tokens still serve as
  keys and values) and the block returns just their outputs: the last block of a model that
  reads a few tokens' outputs need not compute the others.
  """
  config: TransformerConfig

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, training: bool,
               select: Optional[Callable[[jax.Array], jax.Array]] = None) -> jax.Array:
    cfg = self.config
    dot_general = cfg.dot_general()
    h = nn.LayerNorm()(x)
    queries = h
    if select is not None:  # mask (B, heads, L, L) -> (B, heads, L', L).
      queries, x = select(h), select(x)
      mask = jax.vmap(select, in_axes=1, out_axes=1)(mask)
    h = nn.MultiHeadDotProductAttention(
        num_heads=cfg.num_heads, dropout_rate=cfg.dropout_rate, kernel_init=_init,
        deterministic=not training, qkv_dot_general=dot_general,
        out_dot_general=dot_general)(queries, h, mask=mask)
    x = x + cfg.dropout()(h, deterministic=not training)
    return x + MlpBlock(cfg)(nn.LayerNorm()(x), training)


class DecisionTransformer(nn.Module):
  """Maps a K-step window to actions in [-1, 1] at every step, shape (B, K, act_dim)."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, obs: jax.Array, action: jax.Array, rtg: jax.Array, ctg: jax.Array,
               timestep: jax.Array, mask: Optional[jax.Array] = None,
               training: bool = False, outputs: str = 'all') -> jax.Array:
    """obs (B, K, obs_dim), action (B, K, act_dim), rtg/ctg/mask (B, K), timestep (B, K) int.

    `outputs='all'` predicts the action of every step, (B, K, act_dim), computing the last
    block only at the observation tokens; `'last'` predicts the last step's action only,
    (B, 1, act_dim), without the (unknown) last action token: the acting path. `'reference'`
    is `'all'` computed at every token of every block, as the original Decision Transformer
    does; the three agree to float rounding.
    """
    if outputs not in ('all', 'last', 'reference'):
      raise ValueError(f"outputs must be 'all', 'last' or 'reference', got {outputs!r}")
    cfg = self.config
    batch, steps = rtg.shape
    per_step = cfg.tokens_per_step
    if mask is None:
      mask = jnp.ones((batch, steps), jnp.float32)
    time = nn.Embed(cfg.max_timestep, cfg.embed_dim, embedding_init=_init, name='embed_time')(
        jnp.clip(timestep, 0, cfg.max_timestep - 1))
    dense = lambda name: nn.Dense(cfg.embed_dim, kernel_init=_init, name=name)
    tokens = [dense('embed_return')(rtg[..., None])]
    if cfg.use_cost_token:
      tokens.append(dense('embed_cost')(ctg[..., None]))
    tokens += [dense('embed_obs')(obs), dense('embed_action')(action)]
    # (B, K, tokens_per_step, E) -> (B, K * tokens_per_step, E): R_1, s_1, a_1, R_2, ...
    x = jnp.stack([t + time for t in tokens], axis=2).reshape(batch, -1, cfg.embed_dim)
    token_mask = jnp.repeat(mask, per_step, axis=1)
    if outputs == 'last':  # The last token is then the last observation.
      x, token_mask = x[:, :-1], token_mask[:, :-1]
    x = nn.LayerNorm(name='embed_ln')(x)
    x = cfg.dropout()(x, deterministic=not training)

    attention_mask = nn.combine_masks(
        nn.make_causal_mask(token_mask),
        nn.make_attention_mask(jnp.ones_like(token_mask), token_mask))
    if outputs == 'last':
      select = lambda t: t[:, -1:]
    else:  # The observation tokens, (B, K, ...).
      select = lambda t: t.reshape(t.shape[0], steps, per_step, *t.shape[2:])[:, :, -2]
    for i in range(cfg.num_layers):
      last = i == cfg.num_layers - 1 and outputs != 'reference'
      x = TransformerBlock(cfg, name=f'block_{i}')(x, attention_mask, training,
                                                   select if last else None)
    x = nn.LayerNorm(name='final_ln')(x)
    if outputs == 'reference':
      x = select(x)
    return jnp.tanh(nn.Dense(cfg.act_dim, kernel_init=_init, name='action_head')(x))
