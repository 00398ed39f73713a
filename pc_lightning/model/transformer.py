"""Block-causal procedure transformer with KV-cached generation.

A sequence is a *state block* followed by *step blocks*; every block is an H x W grid
of tokens (N = H*W). The output at the state block predicts step 0; the output at step
block l predicts step l+1 token by token (teacher forcing shifted by one block). Tokens
inside a block see each other; a step block sees the state block and the last
``window`` step blocks, itself included, so ``window=1`` is the paper's
p(x_l | x_{l-1}, s) and ``window=None`` is full block-causal attention.

The action is read out by one learned *query token* hosted by a block: it sees what
its host block sees (plus itself), and no other token ever sees it. Hosting it at the
last step block gives procedure cloning; hosting it at the state block gives BC (and
Aux BC, where the steps are extra targets the action cannot see).

With ``patch`` (rows, columns) > 1 a token is a patch of cells: its embedding sums one
embedding per (cell position, cell token) and its output holds logits for each of its
cells, so the cost per block falls with the number of tokens while the data, the losses
and the generated blocks stay per cell.

No absolute position embedding by default: a small convolutional stem gives each token
its neighbourhood, so a model trained on 16x16 grids runs unchanged on 31x31 ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SMALL_ATTENTION_KEYS = 64  # up to this many keys, attention is two batched matmuls, not the fused kernel


@dataclass
class TransformerConfig:
    """Sizes of the sequence model. Vocabularies come from the domain's codec."""

    state_vocab: int
    step_vocab: int
    action_vocab: int
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.0
    window: int | None = 1
    stem_kernel: int = 3
    stem_layers: int = 1
    state_in_steps: bool = True
    pos_emb: str = "none"
    rel_pos: bool = True
    state_in_steps: bool = True
    steps_attend_state: bool = True
    hide_from_steps: tuple[int, ...] = ()
    attn_sink: bool = True
    query_sees_state: bool = True
    patch: tuple[int, int] = (1, 1)
    step_bits: int = 0

    def __post_init__(self) -> None:
        self.hide_from_steps = tuple(self.hide_from_steps)
        self.patch = tuple(int(p) for p in self.patch)
        if len(self.patch) != 2 or min(self.patch) < 1:
            raise ValueError(f"patch must be two positive sizes (rows, columns), got {self.patch}")
        if self.step_bits < 0 or 2**self.step_bits > self.step_vocab:
            raise ValueError(f"step_bits={self.step_bits} needs 0 <= 2**step_bits <= step_vocab={self.step_vocab}")
        if any(not 0 < t < self.state_vocab for t in self.hide_from_steps):
            raise ValueError(f"hide_from_steps must hold state tokens in 1..{self.state_vocab - 1}, "
                             f"got {self.hide_from_steps}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be >= 1 or None (full attention), got {self.window}")
        if self.stem_kernel % 2 == 0:
            raise ValueError(f"stem_kernel must be odd, got {self.stem_kernel}")
        if self.pos_emb not in ("none", "sincos"):
            raise ValueError(f"pos_emb must be 'none' or 'sincos', got {self.pos_emb!r}")


def sincos_2d(h: int, w: int, d: int, device: torch.device) -> Tensor:
    """Fixed 2-D sinusoidal position embedding, (h, w, d)."""
    quarter = d // 4
    freqs = torch.exp(-math.log(10000.0) * torch.arange(quarter, device=device) / max(quarter, 1))
    ys = torch.arange(h, device=device)[:, None] * freqs  # (h, d/4)
    xs = torch.arange(w, device=device)[:, None] * freqs  # (w, d/4)
    emb = torch.zeros(h, w, d, device=device)
    emb[..., 0 * quarter : 1 * quarter] = ys.sin()[:, None]
    emb[..., 1 * quarter : 2 * quarter] = ys.cos()[:, None]
    emb[..., 2 * quarter : 3 * quarter] = xs.sin()[None]
    emb[..., 3 * quarter : 4 * quarter] = xs.cos()[None]
    return emb


class GridStem(nn.Module):
    """Residual convolutions over a grid of token embeddings: local context per token."""

    def __init__(self, d: int, kernel: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(d, d, kernel, padding=kernel // 2) for _ in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        # x: (M, H, W, d) -> (M, H*W, d)
        m, h, w, d = x.shape
        if w == 1 and self.convs:  # a column of tokens (one patch per row): the same convolution in 1-D,
            y = x[:, :, 0].transpose(1, 2)  # (M, d, H)   since the padded columns only add zeros
            for conv in self.convs:
                k = conv.weight.shape[-1]
                y = y + F.conv1d(F.gelu(y), conv.weight[..., k // 2], conv.bias, padding=conv.padding[0])
            return y.transpose(1, 2).contiguous()
        y = x.permute(0, 3, 1, 2)  # (M, d, H, W)
        for conv in self.convs:
            y = y + conv(F.gelu(y))
        return y.permute(0, 2, 3, 1).reshape(m, h * w, d)


class Layer(nn.Module):
    """Pre-norm transformer layer, split into qkv / attend / finish so that the full
    forward pass and the cached generation share every weight and every operation."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv_proj = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, d))
        self.drop = nn.Dropout(cfg.dropout)
        # a learned key/value every query may attend to instead of content ("attention sink")
        e = d // cfg.n_heads
        self.sink = nn.Parameter(torch.zeros(2, 1, 1, cfg.n_heads, e)) if cfg.attn_sink else None

    def qkv(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # h: (..., T, d) -> three (..., T, heads, d/heads)
        q, k, v = self.qkv_proj(self.ln1(h)).chunk(3, dim=-1)
        shape = (*h.shape[:-1], self.n_heads, h.shape[-1] // self.n_heads)
        return q.reshape(shape), k.reshape(shape), v.reshape(shape)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        # q: (M, Tq, h, e); k, v: (M, Tk, h, e); mask: (M, Tk) bool, True = visible;
        # bias: (h, Tq, Tk) float, added to the attention logits
        if self.sink is not None:
            m = k.shape[0]
            k = torch.cat([self.sink[0].expand(m, -1, -1, -1), k], 1)
            v = torch.cat([self.sink[1].expand(m, -1, -1, -1), v], 1)
            if mask is not None:
                mask = torch.cat([mask.new_ones(m, 1), mask], 1)
            if bias is not None:
                bias = F.pad(bias, (1, 0))
        attn_mask = None if mask is None else mask[:, None, None, :]
        if bias is not None:
            attn_mask = bias[None] if attn_mask is None else bias[None].masked_fill(~attn_mask, float("-inf"))
        if k.shape[1] <= SMALL_ATTENTION_KEYS:  # a few keys: two batched matmuls beat the fused kernel
            scores = (q.transpose(1, 2) @ k.permute(0, 2, 3, 1)) * q.shape[-1] ** -0.5  # (M, h, Tq, Tk)
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
                    else scores + attn_mask
            return (scores.softmax(-1) @ v.transpose(1, 2)).transpose(1, 2).flatten(-2)  # (M, Tq, d)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attn_mask
        )  # (M, h, Tq, e)
        return out.transpose(1, 2).flatten(-2)  # (M, Tq, d)

    def finish(self, h: Tensor, att: Tensor) -> Tensor:
        h = h + self.drop(self.out_proj(att))
        return h + self.drop(self.mlp(self.ln2(h)))


def distance_bias(h: int, w: int, n_heads: int, device: torch.device) -> Tensor:
    """2-D ALiBi: head i adds -slope_i * (Manhattan distance) between cells, (heads, N, N).

    Slopes run geometrically from 1 (local heads) to 1/2**(heads-1) (near-global heads).
    A relative position: the same model runs on any grid size."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dist = (ys[:, None] - ys[None]).abs() + (xs[:, None] - xs[None]).abs()  # (N, N)
    slopes = 2.0 ** -torch.arange(n_heads, device=device, dtype=torch.float32)
    return -slopes[:, None, None] * dist[None].float()


def windows(t: Tensor, w: int) -> Tensor:
    """For each block b, blocks b-w+1..b (zero-padded before the first): (B, K, ...) -> (B, K, w, ...)."""
    k = t.shape[1]
    pad = t.new_zeros((t.shape[0], w - 1, *t.shape[2:]))
    padded = torch.cat([pad, t], dim=1)  # (B, K+w-1, ...)
    idx = torch.arange(k, device=t.device)[:, None] + torch.arange(w, device=t.device)[None]  # (K, w)
    return padded[:, idx]


def _rows(kv: list[tuple[Tensor, Tensor]] | None, rows: Tensor | None) -> list[tuple[Tensor, Tensor]] | None:
    """Per-layer keys/values restricted to the sequences ``rows`` (bool mask; None: all)."""
    if kv is None or rows is None:
        return kv
    idx = rows.nonzero().squeeze(1)  # once, not per tensor as boolean indexing would
    return [(k.index_select(0, idx), v.index_select(0, idx)) for k, v in kv]


@dataclass
class Generation:
    """Output of :meth:`ProcedureTransformer.generate`."""

    actions: Tensor  # (B,) long
    action_logits: Tensor  # (B, A)
    steps: Tensor  # (B, Lmax, H, W) long, -1 past each sequence's length
    lengths: Tensor  # (B,) long: number of step blocks up to the one hosting the action
    forward_blocks: int  # step blocks run through the network, summed over the batch
    make_chains: Callable[[], list["Chain"]] = field(repr=False, default=list)

    @cached_property
    def chains(self) -> list["Chain"]:
        """Per sequence, every block generated so far (reusable as a prefix); built on first use."""
        return self.make_chains()


@dataclass
class Chain:
    """Every block generated for one sequence, and the step context it was generated under."""

    blocks: Tensor  # (L, H, W) long
    context: Tensor  # (H, W) long, see ProcedureTransformer.step_context
    context_kv: list[tuple[Tensor, Tensor]] | None = None  # per layer, the context block's (N, h, e) keys/values


class ProcedureTransformer(nn.Module):
    """State block, step blocks and an action query through one block-causal transformer."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        p = cfg.patch[0] * cfg.patch[1]
        extra = int(p > 1)  # one id for cells outside the grid, where a patch overhangs it
        self.state_emb = nn.Embedding(p * cfg.state_vocab + extra, d)
        self.step_emb = nn.Embedding(p * cfg.step_vocab + extra, d)
        self.state_in_step_emb = nn.Embedding(p * cfg.state_vocab + extra, d) if cfg.state_in_steps else None
        self.state_stem = GridStem(d, cfg.stem_kernel, cfg.stem_layers)
        self.step_stem = GridStem(d, cfg.stem_kernel, cfg.stem_layers)
        self.action_query = nn.Parameter(torch.randn(d) * 0.02)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        # per cell of a patch: logits over the vocabulary, or with step_bits B, logits over
        # ("bits", symbol 2**B, ...) then B bit logits
        self.n_bits = cfg.step_bits
        self.n_symbols = cfg.step_vocab - 2**cfg.step_bits if cfg.step_bits else 0
        self.cell_outputs = 1 + self.n_symbols + self.n_bits if self.n_bits else cfg.step_vocab
        self.step_head = nn.Linear(d, p * self.cell_outputs)
        if self.n_bits:
            ids = torch.arange(2**self.n_bits)
            self.register_buffer("_bit_table", ((ids[:, None] >> torch.arange(self.n_bits)) & 1).float(),
                                 persistent=False)  # (2**B, B): bit b of each bit-vector id
        self.action_head = nn.Linear(d, cfg.action_vocab)
        self._bias_cache: dict[tuple, Tensor] = {}

    @property
    def reusable(self) -> bool:
        """Whether a generated chain depends on the state only through :meth:`step_context`.

        Step blocks see the state only as its context (the state with ``hide_from_steps``
        tokens blanked: per cell, and as the context block they attend to). With window 1,
        x_{l+1} = f(x_l, context), so states with the same context share the whole greedy
        chain, and a rollout continues the previous step's procedure instead of starting
        again (in a maze the context hides the agent, the one thing that moves)."""
        return self.cfg.window == 1

    def step_context(self, state: Tensor) -> Tensor:
        """The state as step blocks see it per cell: ``hide_from_steps`` tokens become token 0."""
        for t in self.cfg.hide_from_steps:
            state = state.masked_fill(state == t, 0)
        return state

    # ----------------------------------------------------------------- patches
    def grid(self, h: int, w: int) -> tuple[int, int]:
        """The token grid of an H x W block of cells: one token per ``patch`` of cells."""
        ph, pw = self.cfg.patch
        return -(-h // ph), -(-w // pw)

    def _embed(self, emb: nn.Embedding, cells: Tensor, vocab: int) -> Tensor:
        """Cell tokens (..., H, W) -> patch embeddings (..., H', W', d): the sum over a patch's
        cells of an embedding per (position in the patch, token); cells past the grid's edge
        get one shared id."""
        ph, pw = self.cfg.patch
        if ph * pw == 1:
            return emb(cells)
        *lead, h, w = cells.shape
        gh, gw = self.grid(h, w)
        ids = cells + vocab * (torch.arange(pw, device=cells.device)
                               + pw * torch.arange(ph, device=cells.device)[:, None]).repeat(gh, gw)[:h, :w]
        ids = F.pad(ids, (0, gw * pw - w, 0, gh * ph - h), value=ph * pw * vocab)  # (..., gh*ph, gw*pw)
        ids = ids.reshape(*lead, gh, ph, gw, pw).transpose(-3, -2)  # (..., gh, gw, ph, pw)
        bags = F.embedding_bag(ids.reshape(-1, ph * pw), emb.weight, mode="sum")  # (..., d) per patch
        return bags.reshape(*ids.shape[:-2], -1)

    def _to_cells(self, t: Tensor, h: int, w: int) -> Tensor:
        """Per-token values of a block's patch cells (M, H'*W', ph*pw, ...) -> per cell (M, H, W, ...),
        dropping the cells past the grid's edge. The inverse of :meth:`_embed`'s grouping."""
        ph, pw = self.cfg.patch
        gh, gw = self.grid(h, w)
        m, rest = t.shape[0], t.shape[3:]
        t = t.reshape(m, gh, gw, ph, pw, *rest).transpose(2, 3)  # (M, gh, ph, gw, pw, ...)
        return t.reshape(m, gh * ph, gw * pw, *rest)[:, :h, :w]

    def _log_probs(self, out: Tensor) -> Tensor:
        """A cell's bit-head outputs (..., 1 + S + B) -> log-probabilities over the step
        vocabulary (..., 2**B + S): p(bit vector v) = p(bits) * prod_b p(bit b = v_b)."""
        kind = out[..., : 1 + self.n_symbols].log_softmax(-1)  # (..., 1 + S): "bits", then the symbols
        bit = out[..., 1 + self.n_symbols :]  # (..., B)
        table = self._bit_table.to(out.dtype)
        vectors = F.logsigmoid(bit) @ table.T + F.logsigmoid(-bit) @ (1 - table).T  # (..., 2**B)
        return torch.cat([kind[..., :1] + vectors, kind[..., 1:]], -1)

    def step_logits(self, hidden: Tensor, h: int, w: int, raw: bool = False) -> Tensor:
        """Final hidden states of a block's tokens (..., H'*W', d) -> per-cell logits (..., H*W, V)
        (normalised log-probabilities with ``step_bits``; with ``raw`` as well, the bit head's
        own outputs (..., H*W, 1 + S + B), for :meth:`cell_nll` and :meth:`cell_argmax`)."""
        out = self.step_head(self.ln_f(hidden))  # (..., H'*W', ph*pw*outputs)
        ph, pw = self.cfg.patch
        if ph * pw > 1:
            *lead, n, _ = out.shape
            cells = self._to_cells(out.reshape(-1, n, ph * pw, self.cell_outputs), h, w)  # (M, H, W, c)
            out = cells.reshape(*lead, h * w, self.cell_outputs)
        return self._log_probs(out) if self.n_bits and not raw else out

    def cell_nll(self, out: Tensor, target: Tensor) -> Tensor:
        """Raw per-cell outputs (T, c) (``step_logits(..., raw=True)``) and target tokens (T,)
        -> -log p(target) (T,), 0 where the target is negative (ignored). With ``step_bits``
        equal to the cross-entropy over :meth:`_log_probs`'s full table, without building its
        2**B columns (seaquest: 1,049 per cell)."""
        if not self.n_bits:
            nll = F.cross_entropy(out, target.clamp(min=0), reduction="none")
            return torch.where(target >= 0, nll, torch.zeros_like(nll))
        kind = out[:, : 1 + self.n_symbols].log_softmax(-1)  # (T, 1 + S)
        bit = out[:, 1 + self.n_symbols :]  # (T, B)
        t = target.clamp(min=0)
        is_vector = t < 2**self.n_bits
        t_bits = ((t[:, None] >> torch.arange(self.n_bits, device=t.device)) & 1).bool()  # (T, B)
        vector_lp = kind[:, 0] + torch.where(t_bits, F.logsigmoid(bit), F.logsigmoid(-bit)).sum(-1)
        symbol = (t - 2**self.n_bits + 1).clamp(1, self.n_symbols) if self.n_symbols else torch.zeros_like(t)
        symbol_lp = kind.gather(1, symbol[:, None])[:, 0]
        return torch.where(target >= 0, -torch.where(is_vector, vector_lp, symbol_lp), torch.zeros_like(vector_lp))

    def cell_argmax(self, out: Tensor) -> Tensor:
        """Raw per-cell outputs (..., c) -> the most likely token (...,). With ``step_bits``
        without the 2**B-way table: the best bit vector sets each bit to its more likely value,
        and it competes with the symbols through p(bits) times its probability."""
        if not self.n_bits:
            return out.argmax(-1)
        # log p(bits) and log p(symbol) share log_softmax's normaliser: compare the raw logits
        bit = out[..., 1 + self.n_symbols :]
        vector = (bit > 0).long()  # (..., B)
        vector_id = (vector << torch.arange(self.n_bits, device=out.device)).sum(-1)
        vector_lp = out[..., 0] + F.logsigmoid(bit.abs()).sum(-1)  # log p of the best vector, unnormalised
        if not self.n_symbols:
            return vector_id
        sym_lp, sym = out[..., 1 : 1 + self.n_symbols].max(-1)
        return torch.where(vector_lp >= sym_lp, vector_id, sym + 2**self.n_bits)

    def _decode(self, hidden: Tensor, h: int, w: int) -> Tensor:
        """Greedy block (M, H, W) from its tokens' final hidden states (M, H'*W', d)
        (with ``step_bits`` by :meth:`cell_argmax`)."""
        ph, pw = self.cfg.patch
        out = self.step_head(self.ln_f(hidden)).unflatten(-1, (ph * pw, self.cell_outputs))  # (M, H'*W', P, c)
        return self._to_cells(self.cell_argmax(out), h, w)  # (M, H'*W', P) -> (M, H, W)

    # ----------------------------------------------------------------- embeddings
    def _pos(self, h: int, w: int, device: torch.device) -> Tensor | float:
        gh, gw = self.grid(h, w)
        return sincos_2d(gh, gw, self.cfg.d_model, device) if self.cfg.pos_emb == "sincos" else 0.0

    def _bias(self, h: int, w: int, key_blocks: int, device: torch.device) -> Tensor | None:
        """Relative-position bias of an H x W block's tokens over ``key_blocks`` blocks, (heads, N, k*N)
        with N tokens per block."""
        if not self.cfg.rel_pos:
            return None
        key = (h, w, key_blocks, str(device))
        if key not in self._bias_cache:  # a constant: built once per grid size and key count
            gh, gw = self.grid(h, w)
            self._bias_cache[key] = distance_bias(gh, gw, self.cfg.n_heads, device).repeat(1, 1, key_blocks)
        return self._bias_cache[key]

    def embed_state(self, state: Tensor) -> Tensor:
        # state: (B, H, W) -> (B, N, d), N tokens (H*W without patches)
        _, h, w = state.shape
        return self.state_stem(self._embed(self.state_emb, state, self.cfg.state_vocab)
                               + self._pos(h, w, state.device))

    def embed_steps(self, steps: Tensor, state: Tensor, host: Tensor | None = None) -> Tensor:
        # steps: (B, K, H, W), state: (B, H, W), host: (B, K) bool -> (B, K, N, d)
        # Each block sees the state's context per cell; the block hosting the action query
        # sees the full state (in a maze: where the agent stands, to read its action there).
        b, k, h, w = steps.shape
        gh, gw = self.grid(h, w)
        e = self._embed(self.step_emb, steps, self.cfg.step_vocab) + self._pos(h, w, steps.device)  # (B, K, H', W', d)
        if self.state_in_step_emb is not None:
            vocab = self.cfg.state_vocab
            ctx = self._embed(self.state_in_step_emb, self.step_context(state), vocab)[:, None]  # (B, 1, H', W', d)
            if host is not None and self.cfg.hide_from_steps:
                full = self._embed(self.state_in_step_emb, state, vocab)[:, None]
                ctx = torch.where(host[:, :, None, None, None], full, ctx)
            e = e + ctx
        return self.step_stem(e.reshape(b * k, gh, gw, -1)).reshape(b, k, gh * gw, -1)

    # ----------------------------------------------------------------- teacher forcing
    def forward(
        self,
        state: Tensor,
        steps: Tensor | None = None,
        step_valid: Tensor | None = None,
        action_host: Tensor | None = None,
        step_segment: Tensor | None = None,
        raw: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Teacher-forced pass.

        state (B, H, W); steps (B, K, H, W) or None; step_valid (B, K) bool (padding
        blocks False); action_host (B,) long, -1 for the state block or a step index;
        step_segment (B, K) long, non-decreasing: a block never sees a block of another
        segment (several independent pieces of procedure can share one example).
        Returns per-cell logits: from the state block (B, H*W, Vx) predicting step 0, from
        the step blocks (B, K, H*W, Vx) predicting the next step, and the action (B, A).
        With ``raw`` the per-cell outputs are the head's own (with ``step_bits``: Vx = 1 + S + B,
        not log-probabilities over the vocabulary), for :meth:`cell_nll` and :meth:`cell_argmax`.
        """
        bsz, h, w_grid = state.shape
        n = math.prod(self.grid(h, w_grid))  # tokens per block
        dev = state.device
        see_state = self.cfg.steps_attend_state
        has_steps = steps is not None and steps.shape[1] > 0
        separate_context = bool(self.cfg.hide_from_steps) and has_steps  # BC needs no context
        hs = self.embed_state(state)  # (B, N, d)
        hc = self.embed_state(self.step_context(state)) if separate_context else None  # (B, N, d)
        hq = self.action_query.expand(bsz, 1, -1)  # (B, 1, d)
        if action_host is None:
            action_host = torch.full((bsz,), -1, dtype=torch.long, device=dev)
        state_bias = self._bias(h, w_grid, 1, dev)
        hx = None
        if has_steps:
            k_blocks = steps.shape[1]
            is_host = torch.arange(k_blocks, device=dev)[None] == action_host[:, None]  # (B, K)
            hx = self.embed_steps(steps, state, is_host)  # (B, K, N, d)
            w = k_blocks if self.cfg.window is None else min(self.cfg.window, k_blocks)
            if step_valid is None:
                step_valid = torch.ones(bsz, k_blocks, dtype=torch.bool, device=dev)
            win_valid = windows(step_valid, w)  # (B, K, w)
            if step_segment is not None:
                win_valid = win_valid & (windows(step_segment, w) == step_segment[:, :, None])
            win_valid = win_valid.repeat_interleave(n, dim=2)  # (B, K, w*N)
            step_mask = win_valid
            if see_state:
                step_mask = torch.cat([win_valid.new_ones(bsz, k_blocks, n), win_valid], dim=2)
            step_mask = None if bool(step_mask.all()) else step_mask.flatten(0, 1)  # (B*K, keys)
            step_bias = self._bias(h, w_grid, w + int(see_state), dev)
            ar = torch.arange(bsz, device=dev)
            host = action_host.clamp(min=0)
            host_valid = win_valid[ar, host] & (action_host >= 0)[:, None]  # (B, w*N)

        for layer in self.layers:
            qs, ks, vs = layer.qkv(hs)  # (B, N, h, e)
            qq, kq, vq = layer.qkv(hq)  # (B, 1, h, e)
            if separate_context:
                qc, kc, vc = layer.qkv(hc)
                hc = layer.finish(hc, layer.attend(qc, kc, vc, None, state_bias))
            else:
                kc, vc = ks, vs
            q_keys, q_vals = [ks], [vs]
            sees_state = torch.ones(bsz, n, dtype=torch.bool, device=dev)
            if not self.cfg.query_sees_state:  # hosted at a step block, it reads that block only
                sees_state = sees_state & (action_host < 0)[:, None]
            q_mask = [sees_state]
            if hx is not None:
                qx, kx, vx = layer.qkv(hx)  # (B, K, N, h, e)
                kw = windows(kx, w).flatten(2, 3)  # (B, K, w*N, h, e)
                vw = windows(vx, w).flatten(2, 3)
                keys, vals = kw, vw
                if see_state:
                    keys = torch.cat([kc[:, None].expand(-1, k_blocks, -1, -1, -1), kw], dim=2)
                    vals = torch.cat([vc[:, None].expand(-1, k_blocks, -1, -1, -1), vw], dim=2)
                att_x = layer.attend(qx.flatten(0, 1), keys.flatten(0, 1), vals.flatten(0, 1), step_mask, step_bias)
                q_keys.append(kw[ar, host])
                q_vals.append(vw[ar, host])
                q_mask.append(host_valid)
            q_keys.append(kq)
            q_vals.append(vq)
            q_mask.append(torch.ones(bsz, 1, dtype=torch.bool, device=dev))
            att_q = layer.attend(qq, torch.cat(q_keys, 1), torch.cat(q_vals, 1), torch.cat(q_mask, 1))
            att_s = layer.attend(qs, ks, vs, None, state_bias)
            hs = layer.finish(hs, att_s)
            hq = layer.finish(hq, att_q)
            if hx is not None:
                hx = layer.finish(hx, att_x.reshape(hx.shape))

        state_logits = self.step_logits(hc if separate_context else hs, h, w_grid, raw)  # (B, H*W, Vx)
        step_logits = None if hx is None else self.step_logits(hx, h, w_grid, raw)  # (B, K, H*W, Vx)
        action_logits = self.action_head(self.ln_f(hq[:, 0]))  # (B, A)
        return state_logits, step_logits, action_logits

    # ----------------------------------------------------------------- generation
    def _state_pass(self, state: Tensor, keys_only: bool = False
                    ) -> tuple[Tensor | None, list[tuple[Tensor, Tensor]]]:
        """State block through all layers: its output (B, N, d) and per-layer keys/values.

        ``keys_only``: only the keys/values are wanted, so the last layer's attention and MLP
        (which feed the output alone) are skipped and the output is None."""
        _, h, w = state.shape
        bias = self._bias(h, w, 1, state.device)
        hs = self.embed_state(state)
        kv = []
        for i, layer in enumerate(self.layers):
            q, k, v = layer.qkv(hs)
            kv.append((k, v))
            if keys_only and i == len(self.layers) - 1:
                return None, kv
            hs = layer.finish(hs, layer.attend(q, k, v, None, bias))
        return hs, kv

    def _context_pass(self, contexts: Tensor, prefixes: list["Chain | None"] | None
                      ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """x_0 (B, H, W) and the context block's per-layer keys/values, taken from each
        sequence's chain where it was made under the same context, computed elsewhere."""
        bsz, h, w = contexts.shape
        cached = [b for b in range(bsz) if prefixes is not None and prefixes[b] is not None and self.reusable
                  and prefixes[b].context_kv is not None and torch.equal(prefixes[b].context, contexts[b])]
        if not cached:
            hc, kv = self._state_pass(contexts)
            return self._decode(hc, h, w), kv
        todo = [b for b in range(bsz) if b not in set(cached)]
        x0 = torch.stack([prefixes[b].blocks[0] if b in set(cached) else contexts[b] for b in range(bsz)])
        kv = [(torch.stack([prefixes[b].context_kv[i][0] for b in cached]),
               torch.stack([prefixes[b].context_kv[i][1] for b in cached])) for i in range(len(self.layers))]
        if todo:
            hc, fresh = self._state_pass(contexts[todo])
            x0[todo] = self._decode(hc, h, w)
            order = torch.tensor(cached + todo, device=contexts.device).argsort()
            kv = [(torch.cat([k, fk])[order], torch.cat([v, fv])[order]) for (k, v), (fk, fv) in zip(kv, fresh)]
        return x0, kv

    def _query_pass(self, context: list[tuple[Tensor, Tensor]]) -> Tensor:
        """Action query over per-layer context keys/values (M, T, h, e): action logits (M, A)."""
        m = context[0][0].shape[0]
        hq = self.action_query.expand(m, 1, -1)
        for layer, (k, v) in zip(self.layers, context):
            q, kq, vq = layer.qkv(hq)
            hq = layer.finish(hq, layer.attend(q, torch.cat([k, kq], 1), torch.cat([v, vq], 1)))
        return self.action_head(self.ln_f(hq[:, 0]))

    def _query_context(self, state_kv, i: int, own_k: Tensor, own_v: Tensor) -> tuple[Tensor, Tensor]:
        """Layer i's keys/values for a query hosted at a step block: the state block (if the
        query sees it) and the host's window."""
        if not self.cfg.query_sees_state or state_kv is None:
            return own_k, own_v
        return torch.cat([state_kv[i][0], own_k], 1), torch.cat([state_kv[i][1], own_v], 1)

    def _step_pass(self, hx: Tensor, state_kv, context_kv, window_kv: list[list[tuple[Tensor, Tensor]]], bias,
                   keys_only: bool = False, for_query: bool = True
                   ) -> tuple[Tensor | None, list[tuple[Tensor, Tensor]], list[tuple[Tensor, Tensor]]]:
        """One step block (M, N, d) through all layers after its cached window ``window_kv``.

        Returns its output, its own per-layer keys/values, and the per-layer keys/values an
        action query hosted at it would see. ``keys_only`` (a block that only hosts the
        query): the last layer's attention and MLP are skipped and the output is None.
        ``for_query=False`` (a block that will not host the query): that context is not gathered."""
        own, query_ctx = [], []
        for i, layer in enumerate(self.layers):
            q, k, v = layer.qkv(hx)
            own_k = torch.cat([c[0] for c in window_kv[i]] + [k], 1)  # window blocks, (M, w*N, h, e)
            own_v = torch.cat([c[1] for c in window_kv[i]] + [v], 1)
            own.append((k, v))
            if for_query:
                query_ctx.append(self._query_context(state_kv, i, own_k, own_v))
            if keys_only and i == len(self.layers) - 1:
                return None, own, query_ctx
            keys = torch.cat([context_kv[i][0], own_k], 1) if self.cfg.steps_attend_state else own_k
            vals = torch.cat([context_kv[i][1], own_v], 1) if self.cfg.steps_attend_state else own_v
            hx = layer.finish(hx, layer.attend(q, keys, vals, None, bias))
        return hx, own, query_ctx

    @torch.no_grad()
    def act_from_state(self, state: Tensor) -> Tensor:
        """Action logits (B, A) with the query hosted at the state block (BC, Aux BC)."""
        _, kv = self._state_pass(state, keys_only=True)
        return self._query_pass(kv)

    @torch.no_grad()
    def generate(self, state: Tensor, max_steps: int, stop_fn=None,
                 prefixes: list["Chain | None"] | None = None, constrain_fn=None) -> Generation:
        """Greedy, KV-cached generation of x_0, x_1, ... then the action, batched over B.

        A sequence stops at the first block x_l for which ``stop_fn(state, x_l)`` is True
        (the domain's rule), at a fixed point (the last ``window`` blocks repeat, so greedy
        decoding can never change again), or after ``max_steps`` blocks; its action is then
        read by the query hosted at x_l. Finished sequences leave the batch, so late rounds
        cost only what is still running.

        ``constrain_fn(state, x_l, x_next) -> x_next`` (all (M, H, W)), if given, edits each
        greedy block after x_0 before it is used: the domain's invariants between consecutive
        blocks, enforced instead of learned (constrained decoding; off unless asked for).

        ``prefixes`` (with a :attr:`reusable` model): per sequence, a chain this model
        generated before (``Generation.chains``, with the same ``constrain_fn``). Where it
        was made under this state's step context it is this state's chain too, so generation
        resumes after it, or stops inside it, with exactly the result of generating from scratch.
        """
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        bsz, h, w_grid = state.shape
        dev = state.device
        window = self.cfg.window
        see_state = self.cfg.steps_attend_state
        contexts = self.step_context(state)  # (B, H, W)
        if self.cfg.query_sees_state or not self.cfg.hide_from_steps:
            # what the action query sees (and, with no hidden tokens, what x_0 comes from)
            hs, state_kv = self._state_pass(state, keys_only=bool(self.cfg.hide_from_steps))
        else:
            state_kv = None  # the query reads its host block only: no state pass needed
        if self.cfg.hide_from_steps:  # what step blocks see: the context block
            x0, context_kv = self._context_pass(contexts, prefixes)
        else:
            context_kv = state_kv
            x0 = self._decode(hs, h, w_grid)  # (B, H, W)

        full_context_kv = context_kv
        steps_out = torch.full((bsz, max_steps, h, w_grid), -1, dtype=torch.long, device=dev)
        x = x0.clone()
        rounds = torch.zeros(bsz, dtype=torch.long, device=dev)  # index of the block in x
        prev = torch.full_like(x0, -1)  # the block before x (-1: none)
        forced = torch.zeros(bsz, dtype=torch.bool, device=dev)  # host the action at x, no more
        if prefixes is not None and self.reusable:
            for b, chain in enumerate(prefixes):
                if chain is None or not torch.equal(chain.context, contexts[b]):
                    continue
                chain = chain.blocks[:max_steps]
                c = len(chain)
                stops = torch.zeros(c, dtype=torch.bool, device=dev)
                if stop_fn is not None:
                    stops |= stop_fn(state[b : b + 1].expand(c, -1, -1), chain).to(dev)
                stops[1:] |= (chain[1:] == chain[:-1]).flatten(1).all(1)
                stops[max_steps - 1 :] = True
                hit = torch.nonzero(stops)
                last = int(hit[0]) if len(hit) else c - 1  # stop inside, or resume at the end
                steps_out[b, :last] = chain[:last]
                x[b], rounds[b], forced[b] = chain[last], last, len(hit) > 0
                if last > 0:
                    prev[b] = chain[last - 1]
        step_bias = self._bias(h, w_grid, 1 + int(see_state), dev) if window == 1 else None

        actions = torch.zeros(bsz, dtype=torch.long, device=dev)
        action_logits = torch.zeros(bsz, self.cfg.action_vocab, device=dev)
        lengths = torch.zeros(bsz, dtype=torch.long, device=dev)
        active = torch.arange(bsz, device=dev)
        cache: list[list[tuple[Tensor, Tensor]]] = [[] for _ in self.layers]  # previous blocks
        repeats = torch.zeros(bsz, dtype=torch.long, device=dev)  # consecutive equal blocks
        forward_blocks = 0
        for _ in range(max_steps):
            st = state[active]
            steps_out[active, rounds] = x
            lengths[active] = rounds + 1
            # whether x ends its sequence depends on x alone, so it is known before the pass:
            # each block then runs through the network once, in the one way its use needs
            same = (x == prev).flatten(1).all(1)
            repeats = torch.where(same, repeats + 1, torch.zeros_like(repeats))
            stop = forced | (repeats >= (window if window is not None else max_steps + 1))
            stop |= rounds >= max_steps - 1
            if stop_fn is not None:
                stop |= stop_fn(st, x).to(dev)
            keep = ~stop
            n_stop, n_keep = int(stop.sum()), len(stop) - int(stop.sum())
            n_keys = 1 + len(cache[0]) + int(see_state)
            bias = step_bias if step_bias is not None else self._bias(h, w_grid, n_keys, dev)
            if n_stop:  # x hosts the action query: only its keys/values are needed
                # (embedded with the full state where step blocks otherwise see its context)
                host = torch.ones(n_stop, 1, dtype=torch.bool, device=dev)
                _, _, query_ctx = self._step_pass(
                    self.embed_steps(x[stop][:, None], st[stop], host)[:, 0], _rows(state_kv, stop),
                    _rows(context_kv, stop), [_rows(c, stop) for c in cache], bias, keys_only=True)
                forward_blocks += n_stop
            if n_keep:  # x goes on: its output predicts the next block
                sub = None if n_stop == 0 else keep
                x_keep, st_keep = (x, st) if n_stop == 0 else (x[keep], st[keep])
                hx = self.embed_steps(x_keep[:, None], st_keep)[:, 0]  # (Bk, N, d)
                hx, own, _ = self._step_pass(hx, _rows(state_kv, sub), _rows(context_kv, sub),
                                             [_rows(c, sub) for c in cache], bias, for_query=False)
                forward_blocks += n_keep
            if n_stop:
                logits = self._query_pass(query_ctx)
                action_logits[active[stop]] = logits.float()
                actions[active[stop]] = logits.argmax(-1)
            if not n_keep:
                break
            nxt = self._decode(hx, h, w_grid)
            if constrain_fn is not None:
                nxt = constrain_fn(st_keep, x_keep, nxt)
            keep_rows = None if n_stop == 0 else keep
            cache = [_rows(c, keep_rows) for c in cache]
            if window is None:
                cache = [c + [kv] for c, kv in zip(cache, own)]
            elif window > 1:
                cache = [(c + [kv])[-(window - 1) :] for c, kv in zip(cache, own)]
            active, prev, x, repeats = active[keep], x_keep, nxt, repeats[keep]
            rounds, forced = rounds[keep] + 1, forced[keep]
            state_kv = _rows(state_kv, keep_rows)
            context_kv = _rows(context_kv, keep_rows) if self.cfg.hide_from_steps else state_kv
        reusable, hidden = self.reusable, bool(self.cfg.hide_from_steps)

        def chains() -> list[Chain]:  # a Python loop over the batch: built only when asked for
            out = []
            for b in range(bsz):
                own = steps_out[b, : int(lengths[b])]
                old = prefixes[b] if prefixes is not None else None
                if old is not None and len(old.blocks) > len(own) and reusable \
                        and torch.equal(old.context, contexts[b]):
                    own = old.blocks  # a longer chain already known: keep all of it
                kv = [(k[b], v[b]) for k, v in full_context_kv] if hidden else None
                out.append(Chain(own, contexts[b], kv))
            return out

        return Generation(actions, action_logits, steps_out[:, : int(lengths.max())], lengths, forward_blocks,
                          chains)
