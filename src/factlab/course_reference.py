"""The course's code, re-implemented faithfully and minimally (CS224N "Self-Attention, Transformers, and
Pretraining": minGPT's model.py / attention.py, trainer.py, utils.sample and run.py's evaluation loop): the
course's model, Trainer and decoding, the reference that the tests and the benchmarks compare factlab against.
The tests use it to write course-format `.params` files (torch.save of its state_dict) and to compute reference
logits, losses and greedy answers; the benchmark (`benchmarks/run.py`) uses it as its baseline. None of factlab's
own code paths use it: it lives in the package only so that the tests and the benchmark scripts import one copy
(`from factlab import course_reference as course`).

It keeps what costs time in the course: the registered `mask` buffer and the manual softmax attention, every
example padded to block_size by the datasets' `__getitem__`, a DataLoader over it, the loss over all 127
positions of each example (PAD targets ignored), and decoding that recomputes the whole context for each of the
32 characters of every question, one question at a time.

Departures, all in the course's favour or neutral:
- `Trainer` takes the device to use (the course takes cuda whenever there is one, wrapped in DataParallel) and
  the DataLoader's `num_workers` comes from the config as in the course (the course's run.py asks for 4; the
  benchmark uses 0 by default, see benchmarks/README.md).
- Nothing is printed or saved; there is no test split.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.data.dataloader import DataLoader
from tqdm import tqdm

MASK_CHAR = "\u2047"


# ---------------------------------------------------------------- model.py / attention.py


class CourseConfig:
    embd_pdrop = resid_pdrop = attn_pdrop = 0.1
    synthesizer = False

    def __init__(self, vocab_size, block_size, **kwargs):
        self.vocab_size, self.block_size = vocab_size, block_size
        for key, value in kwargs.items():
            setattr(self, key, value)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.key = nn.Linear(config.n_embd, config.n_embd)
        self.query = nn.Linear(config.n_embd, config.n_embd)
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.attn_drop = nn.Dropout(config.attn_pdrop)
        self.resid_drop = nn.Dropout(config.resid_pdrop)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.register_buffer("mask", torch.tril(torch.ones(config.block_size, config.block_size))
                             .view(1, 1, config.block_size, config.block_size))
        self.n_head = config.n_head

    def forward(self, x):
        B, T, C = x.size()
        k = self.key(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = self.query(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = self.value(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, -1e10)
        att = F.softmax(att, dim=-1)
        att = self.attn_drop(att)
        y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))


class SynthesizerAttention(nn.Module):
    """The 2021 handout's synthesizer: one B (w2) shared by the heads, block_size - 1 columns, no scaling."""

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.w1 = nn.Linear(config.n_embd, config.n_embd)
        self.w2 = nn.Parameter(torch.zeros(config.n_embd // config.n_head, config.block_size - 1))
        self.b2 = nn.Parameter(torch.zeros(config.block_size - 1))
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.attn_drop = nn.Dropout(config.attn_pdrop)
        self.resid_drop = nn.Dropout(config.resid_pdrop)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.register_buffer("mask", torch.tril(torch.ones(config.block_size, config.block_size))
                             .view(1, 1, config.block_size, config.block_size))
        self.n_head = config.n_head
        self.block_size = config.block_size
        nn.init.uniform_(self.w2, -0.001, 0.001)

    def forward(self, x):
        B, T, C = x.size()
        a = F.relu(self.w1(x)).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = self.value(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = a @ self.w2[:, :T] + self.b2[:T]
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, -1e10)
        att = F.softmax(att, dim=-1)
        att = self.attn_drop(att)
        y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.attn = SynthesizerAttention(config) if config.synthesizer else CausalSelfAttention(config)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
            nn.Dropout(config.resid_pdrop),
        )

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        self.drop = nn.Dropout(config.embd_pdrop)
        self.blocks = nn.Sequential(*[Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.block_size = config.block_size
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)

    def get_block_size(self):
        return self.block_size

    def forward(self, idx, targets=None):
        b, t = idx.size()
        assert t <= self.block_size, "Cannot forward, model block size is exhausted."
        x = self.drop(self.tok_emb(idx) + self.pos_emb[:, :t, :])
        x = self.blocks(x)
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=0)
        return logits, loss


def randomize(model: GPT, seed: int) -> GPT:
    """Every parameter random (std 0.02, pos_emb and biases included; LayerNorm weights around 1; the
    synthesizer's w2/b2 large enough to shape the attention), so that a wrong mapping cannot go unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if ".ln" in name or name.startswith("ln_f"):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * noise)
            elif name.endswith(("attn.w2", "attn.b2")):
                p.copy_(noise)
            else:
                p.copy_(0.02 * noise)
    return model.eval()


def from_factlab(model) -> GPT:
    """The course model with the weights of a factlab vanilla or synthesizer GPT (the same parameter names; the
    course's masks are buffers the factlab model does not have; the synthesizer's shared B and b2 lose the last
    column, which no input of the course's reaches). Dropout as in factlab's config."""
    config = model.config
    synthesizer = config.variant == "synthesizer"
    if config.variant != "vanilla" and not (synthesizer and config.synthesizer_b == "shared"):
        raise ValueError(f"only vanilla and the shared-B synthesizer map onto the course model, not "
                         f"{config.variant!r} ({config.synthesizer_b})")
    course = GPT(CourseConfig(config.vocab_size, config.block_size, n_layer=config.n_layer, n_head=config.n_head,
                              n_embd=config.n_embd, embd_pdrop=config.dropout, resid_pdrop=config.dropout,
                              attn_pdrop=config.dropout, synthesizer=synthesizer))
    state = model.state_dict()
    for key in [k for k in state if k.endswith((".attn.w2", ".attn.b2"))]:
        state[key] = state[key][0, :, :-1] if key.endswith("w2") else state[key][:-1]
    missing, unexpected = course.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith(".attn.mask") for k in missing):
        raise ValueError(f"state does not map onto the course model: missing {missing}, unexpected {unexpected}")
    return course.to(next(model.parameters()).device)


# ---------------------------------------------------------------- utils.sample and run.py's evaluation


@torch.no_grad()
def sample(model, x, steps, temperature=1.0, sample=False, top_k=None):
    """utils.sample: `steps` full forward passes, the context cropped to the block size."""
    block_size = model.get_block_size()
    model.eval()
    for _ in range(steps):
        x_cond = x if x.size(1) <= block_size else x[:, -block_size:]
        logits, _ = model(x_cond)
        logits = logits[:, -1, :] / temperature
        if top_k is not None:
            v, _ = torch.topk(logits, top_k)
            logits = logits.masked_fill(logits < v[:, [-1]], -float("inf"))
        probs = F.softmax(logits, dim=-1)
        if sample:
            ix = torch.multinomial(probs, num_samples=1)
        else:
            _, ix = torch.topk(probs, k=1, dim=-1)
        x = torch.cat((x, ix), dim=1)
    return x


def greedy_answer(model: GPT, stoi: dict, itos: dict, question: str, steps: int = 32, device="cpu") -> str:
    """run.py's evaluation of one question: sample 32 characters greedily after `question⁇` and return
    completion.split('⁇')[1]."""
    x = torch.tensor([stoi[c] for c in question + MASK_CHAR], dtype=torch.long)[None, ...].to(device)
    pred = sample(model, x, steps, sample=False)[0]
    completion = "".join(itos[int(i)] for i in pred)
    return completion.split(MASK_CHAR)[1]


def answer_all(model: GPT, stoi: dict, itos: dict, questions: list[str], device="cpu") -> list[str]:
    """run.py's evaluation loop: one question at a time."""
    return [greedy_answer(model, stoi, itos, q, device=device) for q in questions]


# ---------------------------------------------------------------- trainer.py


class TrainerConfig:
    max_epochs = 10
    batch_size = 64
    learning_rate = 3e-4
    betas = (0.9, 0.95)
    grad_norm_clip = 1.0
    weight_decay = 0.1
    lr_decay = False
    warmup_tokens = 375e6
    final_tokens = 260e9
    num_workers = 0

    def __init__(self, **kwargs):
        for key, value in kwargs.items():
            setattr(self, key, value)

    @classmethod
    def course_pretrain(cls, n_documents: int, block_size: int, **overrides):
        """run.py's pretraining settings (it asks for num_workers=4)."""
        return cls(**{"max_epochs": 650, "batch_size": 128, "learning_rate": 6e-3, "lr_decay": True,
                      "warmup_tokens": 512 * 20, "final_tokens": 200 * n_documents * block_size, **overrides})

    @classmethod
    def course_finetune(cls, n_documents: int, block_size: int, pretrained: bool, **overrides):
        """run.py's finetuning settings, with or without a pretrained model."""
        return cls(**{"max_epochs": 10 if pretrained else 75, "batch_size": 256, "learning_rate": 6e-4,
                      "lr_decay": True, "warmup_tokens": 512 * 20,
                      "final_tokens": 200 * n_documents * block_size, **overrides})


def lr_mult(config, tokens) -> float:
    """trainer.py's learning-rate multiplier after `tokens` (the Trainer's inline code, as a function): linear
    warm-up, then a cosine without a clamp on progress, floored at 0.1."""
    if tokens < config.warmup_tokens:
        return float(tokens) / float(max(1, config.warmup_tokens))
    progress = float(tokens - config.warmup_tokens) / float(max(1, config.final_tokens - config.warmup_tokens))
    return max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))


class Trainer:
    """trainer.py's Trainer: a DataLoader over the dataset's padded __getitem__ (no shuffling, as in the course),
    AdamW with the course's name-filtered groups, gradient clipping, and the token-counting lr schedule."""

    def __init__(self, model, train_dataset, config, device="cpu", progress: bool = False):
        self.model = model.to(device)
        self.train_dataset = train_dataset
        self.config = config
        self.device = device
        self.progress = progress
        self.tokens = 0

    def train(self):
        model, config = self.model, self.config

        no_decay = ["bias", "LayerNorm.weight"]
        params_decay = [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)]
        params_nodecay = [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)]
        optim_groups = [
            {"params": params_decay, "weight_decay": config.weight_decay},
            {"params": params_nodecay, "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(optim_groups, lr=config.learning_rate, betas=config.betas)

        def run_epoch(epoch):
            model.train(True)
            loader = DataLoader(self.train_dataset, batch_size=config.batch_size, num_workers=config.num_workers)
            pbar = tqdm(enumerate(loader), total=len(loader), disable=not self.progress)
            for it, (x, y) in pbar:
                x = x.to(self.device)
                y = y.to(self.device)
                with torch.set_grad_enabled(True):
                    logits, loss = model(x, y)
                    loss = loss.mean()
                model.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_norm_clip)
                optimizer.step()
                if config.lr_decay:
                    self.tokens += (y >= 0).sum()  # every position, PAD included, as in the course
                    lr = config.learning_rate * lr_mult(config, self.tokens)
                    for param_group in optimizer.param_groups:
                        param_group["lr"] = lr
                else:
                    lr = config.learning_rate
                pbar.set_description(f"epoch {epoch + 1} iter {it}: train loss {loss.item():.5f}. lr {lr:e}")

        self.tokens = 0
        for epoch in range(config.max_epochs):
            run_epoch(epoch)
