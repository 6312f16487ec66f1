"""The cost model: parameters, forward FLOPs and activation memory of each layer of the four variants, as
functions of the sequence length ℓ, bottleneck m, layers L, width d, heads h and vocabulary V.

The formulas follow factlab.model line by line, and the tests hold them to the real model: parameters to
`sum(p.numel())`, FLOPs to torch's FlopCounterMode, activations to the tensors autograd saves. Conventions:
- FLOPs are those of the matrix products, 2 per multiply-add, per sequence, forward only (forward + backward is
  3x: the backward multiplies by both factors). Elementwise work (softmax, LayerNorm, GELU) is left out.
- Attention is counted dense: all ℓ x ℓ scores, although the causal mask makes half of them useless.
- Activation memory is what autograd saves for the backward pass, in bytes, fp32, dropout 0 (dropout would
  add its masks). Vanilla and perceiver attention go through SDPA's fused CPU kernel, which saves q, k, v, the
  output and one log-sum-exp per query; the synthesizer's additive bias sends SDPA to its plain math path,
  which saves the h x ℓ x ℓ attention weights and the ℓ x ℓ boolean mask. rope has vanilla's matrix products
  (its rotation is elementwise) and no pos_emb; autograd saves one ℓ x d tensor more per layer than for vanilla
  (SDPA keeps the rotated queries and keys, new tensors, besides what vanilla keeps) and, once for the model,
  the cos and sin tables the rotation multiplies by (block x d/h).
"""

from __future__ import annotations

from dataclasses import dataclass

VARIANTS = ("vanilla", "synthesizer", "perceiver", "rope")
FLOAT, INDEX = 4, 8  # bytes of an fp32 activation and of an int64 token id


@dataclass(frozen=True)
class Sizes:
    length: int  # ℓ, the sequence length of the batch
    n_layer: int = 4  # L
    n_head: int = 8  # h
    n_embd: int = 256  # d
    bottleneck_dim: int = 32  # m
    vocab_size: int = 256  # V (wiki.txt has 256 characters with PAD and MASK)
    block_size: int | None = None  # sizes pos_emb and the synthesizer's B; defaults to ℓ
    synthesizer_b: str = "shared"  # one B for all heads (the course's code) or "per-head" (the handout's B_i)

    @property
    def block(self) -> int:
        return self.length if self.block_size is None else self.block_size


@dataclass(frozen=True)
class Layer:
    """One kind of block: how many the model has and what one of them costs (per sequence where it matters)."""

    kind: str
    count: int
    params: int
    proj_flops: int  # q/k/v/output projections and the MLP
    score_flops: int  # the attention scores (q kᵀ, or the synthesizer's ReLU(XA+b1) B)
    mix_flops: int  # the weighted sum of the values
    activation_bytes: int  # per sequence, plus shared_bytes once per batch
    shared_bytes: int = 0

    @property
    def flops(self) -> int:
        return self.proj_flops + self.score_flops + self.mix_flops


def block_params(d: int) -> int:
    # LayerNorms 2 x 2d; q, k, v, proj 4 x (d² + d); MLP d x 4d + 4d and 4d x d + d
    return 4 * d + 4 * (d * d + d) + (8 * d * d + 5 * d)


def layers(variant: str, s: Sizes) -> list[Layer]:
    l, d, h, m, L = s.length, s.n_embd, s.n_head, s.bottleneck_dim, s.n_layer
    mlp = 16 * d * d  # two d x 4d products per position
    stats = 4  # two LayerNorms, each saving a mean and a 1/std per position
    if variant in ("vanilla", "rope"):
        extra = d if variant == "rope" else 0  # measured against autograd's saved tensors (module docstring)
        # saved per position: 2 residual inputs, ln1 out, q, k, v, attention out, ln2 out, 4d + 4d around GELU = 16d
        return [Layer("block", L, block_params(d), l * (8 * d * d + mlp), 2 * l * l * d, 2 * l * l * d,
                      FLOAT * l * (16 * d + extra + h + stats))]
    if variant == "synthesizer":
        # w1 replaces query and key (one projection fewer); B (or each head's B_i) is d/h x block, b2 is block.
        n_b = h if s.synthesizer_b == "per-head" else 1
        params = block_params(d) - (d * d + d) + n_b * (d // h) * s.block + s.block
        # the math path also saves the B_iᵀ copied per sequence (d x ℓ) and the softmax weights (h x ℓ x ℓ)
        return [Layer("block", L, params, l * (6 * d * d + mlp), 2 * l * l * d, 2 * l * l * d,
                      FLOAT * (17 * l * d + h * l * l + stats * l), shared_bytes=l * l)]
    if variant == "perceiver":
        return [b for b in [
            # m latents (C) query the ℓ inputs: k, v projections run over ℓ, the rest over m. C's LayerNorm
            # input is C itself, a parameter; the input x it reads is saved by the up block.
            Layer("down", 1, block_params(d) + m * d, 4 * m * d * d + 4 * l * d * d + m * mlp, 2 * m * l * d,
                  2 * m * l * d, FLOAT * (3 * l * d + 13 * m * d + h * m + 2 * l + stats * m)),
            Layer("latent", L - 2, block_params(d), m * (8 * d * d + mlp), 2 * m * m * d, 2 * m * m * d,
                  FLOAT * m * (16 * d + h + stats)),
            # the ℓ inputs query the m latents: k, v over m, the rest over ℓ
            Layer("up", 1, block_params(d), 4 * l * d * d + 4 * m * d * d + l * mlp, 2 * l * m * d, 2 * l * m * d,
                  FLOAT * (14 * l * d + 4 * m * d + h * l + stats * l + 2 * m)),
        ] if b.count]
    raise ValueError(f"unknown variant {variant!r}")


def model_costs(variant: str, s: Sizes, batch: int = 1) -> dict:
    """Totals for the whole model; FLOPs per sequence, activations for `batch` sequences."""
    l, d, V = s.length, s.n_embd, s.vocab_size
    blocks = layers(variant, s)
    # tok_emb, pos_emb; ln_f and head (no bias). Saved outside the blocks: token ids and targets (int64),
    # ln_f's input, output and statistics, the log-softmax of the logits, and the loss's 4-byte total weight.
    pos_emb = 0 if variant == "rope" else s.block * d
    params = V * d + pos_emb + 2 * d + V * d + sum(b.count * b.params for b in blocks)
    head_flops = 2 * l * d * V
    outside = batch * (2 * INDEX * l + FLOAT * l * (2 * d + 2 + V)) + FLOAT
    if variant == "rope":
        outside += FLOAT * s.block * (d // s.n_head)  # the cos and sin tables, block x d/(2h) each
    activations = outside + sum(b.count * (batch * b.activation_bytes + b.shared_bytes) for b in blocks)
    flops = head_flops + sum(b.count * b.flops for b in blocks)
    return {
        "params": params,
        "flops": flops,
        "score_flops": sum(b.count * b.score_flops for b in blocks),
        "activation_bytes": activations,
        "layers": [dict(kind=b.kind, count=b.count, params=b.params, flops=b.flops, score_flops=b.score_flops,
                        activation_bytes=batch * b.activation_bytes + b.shared_bytes) for b in blocks],
    }


def score_ratio(s: Sizes) -> float:
    """The issue's attention-score cost ratio perceiver / vanilla: ((L-2) m² + 2ℓm) / (L ℓ²)."""
    l, m, L = s.length, s.bottleneck_dim, s.n_layer
    return ((L - 2) * m * m + 2 * l * m) / (L * l * l)
