"""The character GPT of the course (minGPT), with three interchangeable attention variants.

Parameter names follow the course's minGPT (tok_emb, pos_emb, blocks.N.attn.key/query/value/proj, blocks.N.mlp.0/2,
ln_f, head), so a course checkpoint is a state_dict this model loads. Attention is torch's
`scaled_dot_product_attention` for all three variants: they differ only in what plays the role of queries and keys.

- vanilla: causal multi-head self-attention.
- synthesizer (2021 handout): per head, softmax(ReLU(X A_i + b1) B_i + b2) (X V_i): the weights are synthesized
  from each position alone, with no query-key dot product; as SDPA, q = ReLU(X A_i + b1), k = B_iᵀ, bias b2, scale 1.
  The course's starter code declares one B for all heads (`synthesizer_b="shared"`, the default); the handout's
  formula has one B_i per head (`synthesizer_b="per-head"`).
- perceiver (2023 handout): a learned basis C of m latents cross-attends to the input (latent i sees inputs <= i),
  n_layer - 2 ordinary blocks run over the m latents, and every input position attends back to the latents
  (position j sees latents <= j). All three masks are SDPA's upper-left causal mask.
- rope (2024 handout): vanilla attention whose queries and keys are rotated by their absolute position in every
  layer (rotary position embeddings, θ_i = 10000^(-2(i-1)/d) over pairs of features of each head), and no learned
  position embedding. Decoding with a KV cache stores keys rotated at their absolute positions.

`GPT.attention_maps(idx)` returns the softmax weights of every attention module for an input (for the report):
each module builds its queries, keys and mask in one place, used both by its SDPA call and by
`attention_weights`, which computes softmax(q kᵀ · scale + mask) explicitly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .vocab import PAD_ID

VARIANTS = ("vanilla", "synthesizer", "perceiver", "rope")
SYNTHESIZER_B = ("shared", "per-head")  # the course's code: one B for all heads; the handout's formula: one per head
ROPE_BASE = 10000.0  # the handout's 10000 in θ_i = 10000^(-2(i-1)/d)


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    block_size: int
    n_layer: int = 4
    n_head: int = 8
    n_embd: int = 256
    variant: str = "vanilla"
    bottleneck_dim: int = 32  # m, the perceiver's number of latents
    dropout: float = 0.1  # the course's embd, resid and attn dropout
    synthesizer_b: str = "shared"  # the synthesizer's B: one for all heads (the course's code) or one per head

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.synthesizer_b not in SYNTHESIZER_B:
            raise ValueError(f"unknown synthesizer_b {self.synthesizer_b!r}; choose one of {', '.join(SYNTHESIZER_B)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.variant == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rope rotates pairs of features: head size {self.n_embd // self.n_head} must be even")
        if self.variant == "perceiver" and self.n_layer < 2:
            raise ValueError("the perceiver needs n_layer >= 2 (a down- and an up-projection block)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> GPTConfig:
        """The config that `to_dict` wrote, in this or an earlier factlab (unknown keys are ignored). A synthesizer
        saved before `synthesizer_b` existed has one B_i per head, the default of that time."""
        if saved.get("variant") == "synthesizer":
            saved = {"synthesizer_b": "per-head", **saved}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})


class KVCache:
    """Keys and values of the positions seen so far, so that decoding feeds one new token per step.

    Each sequence of the batch is at its own position (questions differ in length): new keys and values are
    written at each sequence's positions, and a query at position p sees slots <= p only. Slots beyond a
    sequence's prompt hold padding until generation overwrites them, and are masked until then.
    """

    def __init__(self, config: GPTConfig, batch_size: int, length: int, device, dtype=torch.float32):
        shape = (batch_size, config.n_head, length, config.n_embd // config.n_head)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.slots = torch.arange(length, device=device)
        self.positions = self.mask = None

    def advance(self, positions: torch.Tensor) -> None:
        """Declare the (B, T) positions of the tokens about to be fed."""
        self.positions = positions
        self.mask = (self.slots <= positions[..., None]).unsqueeze(1)  # (B, 1, T, slots)

    def store(self, layer: int, k: torch.Tensor | None, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.positions[:, None, :, None].expand(-1, v.size(1), -1, v.size(3))
        if k is not None:
            self.keys[layer].scatter_(2, index, k)
        self.values[layer].scatter_(2, index, v)
        return self.keys[layer], self.values[layer]


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, nh, T, hs)


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    B, nh, T, hs = y.shape
    return y.transpose(1, 2).reshape(B, T, nh * hs)


def rotary_tables(block_size: int, head_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos(t θ_i) and sin(t θ_i) for positions t < block_size and the head_size/2 pairs i (the handout's cache)."""
    if head_size % 2:
        raise ValueError(f"rope rotates pairs of features: the head size {head_size} must be even")
    theta = ROPE_BASE ** (-torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)
    angles = torch.arange(block_size, dtype=torch.float64)[:, None] * theta[None, :]
    return angles.cos().float(), angles.sin().float()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE of x (B, nh, T, hs): each pair of features (x_2i, x_2i+1), as the complex number x_2i + i x_2i+1, times
    e^{i t θ_i}. cos and sin are (T, hs/2), or (B, T, hs/2) for a batch whose sequences sit at their own positions."""
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]
    pairs = x.float().unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2).type_as(x)


def causal_mask(n_queries: int, n_keys: int, device=None) -> torch.Tensor:
    """SDPA's upper-left causal mask (True = may attend): query i sees keys <= i."""
    return torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril()


def softmax_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """The weights that `F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)` applies to v:
    softmax(q kᵀ · scale + mask), where a boolean mask's False is -inf and scale defaults to 1/sqrt(head size)."""
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale
    scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return scores.softmax(dim=-1)


class CausalAttention(nn.Module):
    """Multi-head attention of queries from x to keys/values from `context` (x itself for self-attention),
    under the upper-left causal mask: query i sees context positions <= i."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.key = nn.Linear(config.n_embd, config.n_embd)
        self.query = nn.Linear(config.n_embd, config.n_embd)
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_drop = nn.Dropout(config.dropout)
        self.n_head, self.dropout, self.layer = config.n_head, config.dropout, layer

    def _qkv(self, x, context=None, rotary=None):
        """Queries, keys and values by head; with `rotary` (cos, sin at the positions of x), RoPE rotates the
        queries and keys (self-attention only: rope has no cross-attention)."""
        context = x if context is None else context
        q = split_heads(self.query(x), self.n_head)
        k = split_heads(self.key(context), self.n_head)
        v = split_heads(self.value(context), self.n_head)
        if rotary is not None:
            q, k = rotate(q, *rotary), rotate(k, *rotary)
        return q, k, v

    def attention_weights(self, x, context=None, rotary=None) -> torch.Tensor:
        """(B, nh, T_x, T_context) softmax weights of the forward pass without a cache (and without dropout)."""
        q, k, _ = self._qkv(x, context, rotary)
        return softmax_weights(q, k, causal_mask(q.size(2), k.size(2), x.device))

    def forward(self, x, context=None, cache: KVCache | None = None, rotary=None):
        q, k, v = self._qkv(x, context, rotary)
        dropout = self.dropout if self.training else 0.0
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:
            k, v = cache.store(self.layer, k, v)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=cache.mask, dropout_p=dropout)
        return self.resid_drop(self.proj(merge_heads(y)))


class SynthesizerAttention(nn.Module):
    """Dense Synthesizer: attention weights from each position alone, softmax(ReLU(X A_i + b1) B_i + b2).

    w1 holds A_i and b1 of all heads; b2 is shared, as in the handout. w2 holds B (1 x head_size x block_size),
    shared by the heads as in the course's starter code, or with synthesizer_b="per-head" one B_i per head
    (n_head x head_size x block_size), as in the handout's formula.
    """

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        head_size = config.n_embd // config.n_head
        self.w1 = nn.Linear(config.n_embd, config.n_embd)
        n_b = config.n_head if config.synthesizer_b == "per-head" else 1
        self.w2 = nn.Parameter(torch.empty(n_b, head_size, config.block_size).uniform_(-0.001, 0.001))
        self.b2 = nn.Parameter(torch.zeros(config.block_size))
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_drop = nn.Dropout(config.dropout)
        self.n_head, self.dropout, self.layer = config.n_head, config.dropout, layer

    def _qk_bias(self, x, mask):
        """The SDPA roles: q = ReLU(X A_i + b1), k = B_iᵀ, and bias b2 with -inf where `mask` is False (scale 1)."""
        q = split_heads(F.relu(self.w1(x)), self.n_head)  # (B, nh, T, hs)
        slots = mask.size(-1)
        k = self.w2[:, :, :slots].transpose(1, 2).unsqueeze(0).expand(x.size(0), self.n_head, -1, -1)
        return q, k, self.b2[:slots].masked_fill(~mask, float("-inf"))

    def attention_weights(self, x, context=None, rotary=None) -> torch.Tensor:
        """(B, nh, T, T) synthesized weights softmax(ReLU(X A_i + b1) B_i + b2), causal, as in forward."""
        q, k, bias = self._qk_bias(x, causal_mask(x.size(1), x.size(1), x.device))
        return softmax_weights(q, k, bias, scale=1.0)

    def forward(self, x, context=None, cache: KVCache | None = None, rotary=None):
        v = split_heads(self.value(x), self.n_head)
        if cache is None:
            mask = causal_mask(x.size(1), x.size(1), x.device)
        else:
            _, v = cache.store(self.layer, None, v)
            mask = cache.mask
        q, k, bias = self._qk_bias(x, mask)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout, scale=1.0)
        return self.resid_drop(self.proj(merge_heads(y)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block. With `context`, its attention reads keys/values from there (perceiver)."""

    def __init__(self, config: GPTConfig, layer: int, attention=CausalAttention):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.attn = attention(config, layer)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
            nn.Dropout(config.dropout),
        )

    def forward(self, x, context=None, cache: KVCache | None = None, rotary=None):
        h = self.ln1(x)
        x = x + self.attn(h, None if context is None else self.ln1(context), cache, rotary)
        return x + self.mlp(self.ln2(x))


class DownProjectBlock(Block):
    """Perceiver down-projection: the learned basis C (1 x m x d) cross-attends to the input."""

    def __init__(self, config: GPTConfig):
        super().__init__(config, layer=0)
        self.C = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, config.bottleneck_dim, config.n_embd)))

    def forward(self, x_input):
        return super().forward(self.C.expand(x_input.size(0), -1, -1), context=x_input)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        if config.variant == "rope":  # positions enter through the rotation of queries and keys only
            self.pos_emb = None
            cos, sin = rotary_tables(config.block_size, config.n_embd // config.n_head)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        else:
            self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        self.drop = nn.Dropout(config.dropout)
        if config.variant == "perceiver":
            self.down_block = DownProjectBlock(config)
            self.blocks = nn.ModuleList(Block(config, i) for i in range(1, config.n_layer - 1))
            self.up_block = Block(config, config.n_layer - 1)
        else:
            attention = SynthesizerAttention if config.variant == "synthesizer" else CausalAttention
            self.down_block = self.up_block = None
            self.blocks = nn.ModuleList(Block(config, i, attention) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def supports_kv_cache(self) -> bool:
        # A new input token can change a perceiver latent that later positions read, so decoding recomputes.
        return self.down_block is None

    def forward(self, idx, targets=None, cache: KVCache | None = None):
        """idx (B, T) -> (logits (B, T, vocab), loss or None). With a cache, idx are the tokens at cache.positions."""
        T = idx.size(1)
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than the block size {self.config.block_size}")
        x = self.tok_emb(idx)
        rotary = None
        if self.pos_emb is not None:
            x = x + (self.pos_emb[:, :T] if cache is None else self.pos_emb[0, cache.positions])
        else:
            rotary = ((self.rope_cos[:T], self.rope_sin[:T]) if cache is None
                      else (self.rope_cos[cache.positions], self.rope_sin[cache.positions]))
        x = self.drop(x)
        if self.down_block is None:
            for block in self.blocks:
                x = block(x, cache=cache, rotary=rotary)
        else:
            latents = self.down_block(x)
            for block in self.blocks:
                latents = block(latents)
            x = self.up_block(x, context=latents)
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=PAD_ID)
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, idx) -> list[tuple[str, torch.Tensor]]:
        """(module name, weights (B, nh, queries, keys)) for every attention module, in the order the forward pass
        runs them: blocks.N.attn for vanilla and synthesizer; for the perceiver down_block.attn (latents <- input),
        blocks.N.attn (latents <- latents), up_block.attn (input <- latents). Each module's input is taken from a
        forward pass (in eval mode: no dropout) and its weights recomputed from the same queries, keys and mask."""
        modules = {m: name for name, m in self.named_modules() if hasattr(m, "attention_weights")}
        maps = []

        def record(module, args):
            x, context = args[0], args[1] if len(args) > 1 else None
            rotary = args[3] if len(args) > 3 else None
            maps.append((modules[module], module.attention_weights(x, context, rotary)))

        handles = [m.register_forward_pre_hook(record) for m in modules]
        was_training = self.training
        try:
            self.eval()
            self(idx)
        finally:
            self.train(was_training)
            for h in handles:
                h.remove()
        return maps

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def decay_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(matmul weights, the rest): weight decay applies to the first group only, as in minGPT."""
        matmul = {id(m.weight) for m in self.modules() if isinstance(m, nn.Linear)}
        matmul |= {id(m.w2) for m in self.modules() if isinstance(m, SynthesizerAttention)}
        params = list(self.parameters())
        return [p for p in params if id(p) in matmul], [p for p in params if id(p) not in matmul]

