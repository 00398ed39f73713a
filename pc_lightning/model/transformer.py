"""Block-causal procedure transformer: the config, the layer, the stem, the cell head, ``forward``.

A sequence is a *state block* (an Hs x Ws grid of cells) followed by *step blocks* (Hx x
Wx cells each; the state's shape unless the config declares ``step_shape``). The output at
step block l predicts step l+1 cell by cell (teacher forcing shifted by one block); step 0
is predicted by the state block where the shapes are the same, else by a *start block*, a
step block whose cells are all one reserved token (``start_token``) that the data puts
before x_0. Tokens inside a block see each other; a step block sees the context block (the
state as steps see it, :meth:`ProcedureTransformer.step_context`) and the last ``window``
step blocks, itself included, so ``window=1`` is the paper's p(x_l | x_{l-1}, s) and
``window=None`` is full block-causal attention. Each step cell also gets the embedding of
the context cell at the same coordinates (or of "no cell" where the state grid is smaller).

The action is a block of D tokens (D = 1 for a discrete action), read out by D learned
*query tokens* hosted by a block: they see the host block's window (plus each other), or
the state block where they are hosted there, and no other token ever sees them. Token i is
a categorical over its own bins (``action_vocab[i]``). Hosting the queries at the last
step block gives procedure cloning; hosting them at the state block gives BC (and Aux BC,
where the steps are extra targets the action cannot see).

With ``patch`` (rows, columns) > 1 a token is a patch of cells: its embedding sums one
embedding per (cell position, cell token) and its output holds logits for each of its
cells, so the cost per block falls with the number of tokens while the data, the losses
and the generated blocks stay per cell.

No absolute positions: a small convolutional stem gives each token its neighbourhood
and attention carries a 2-D ALiBi bias, so a model trained on 16x16 grids runs
unchanged on 31x31 ones. Greedy KV-cached generation is in :mod:`.generate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pc_lightning.spec import TokenSpec

SMALL_ATTENTION_KEYS = 64  # up to this many keys, attention is two batched matmuls, not the fused kernel

KV = list[tuple[Tensor, Tensor]]  # per layer, keys and values (M, T, heads, d/heads)


@dataclass
class TransformerConfig:
    """Sizes of the sequence model; vocabularies, hidden tokens and bits come from the domain's spec."""

    state_vocab: int
    step_vocab: int
    action_vocab: int | tuple[int, ...]  # one token's bins, or the bins of each of the action's D tokens
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.0
    window: int | None = 1
    stem_kernel: int = 3
    stem_layers: int = 1
    hidden_from_steps: tuple[int, ...] = ()
    hidden_as: tuple[int, ...] = ()  # per hidden token, the token shown in its place (empty: 0 for each)
    patch: tuple[int, int] = (1, 1)
    step_bits: int = 0
    step_shape: tuple[int, int] | None = None  # steps' own shape (None: the state's)

    def __post_init__(self) -> None:
        self.hidden_from_steps = tuple(self.hidden_from_steps)
        self.hidden_as = tuple(self.hidden_as)
        if self.step_shape is not None:
            self.step_shape = tuple(int(n) for n in self.step_shape)
        self.patch = tuple(int(p) for p in self.patch)
        if len(self.patch) != 2 or min(self.patch) < 1:
            raise ValueError(f"patch must be two positive sizes (rows, columns), got {self.patch}")
        self.token_spec()  # the token fields' checks are the spec's, stated once
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be >= 1 or None (full attention), got {self.window}")
        if self.stem_kernel % 2 == 0:
            raise ValueError(f"stem_kernel must be odd, got {self.stem_kernel}")

    def token_spec(self) -> TokenSpec:
        """The token fields as a (checked) :class:`~pc_lightning.spec.TokenSpec`."""
        return TokenSpec(self.state_vocab, self.step_vocab, list(self.action_bins) if isinstance(
            self.action_vocab, (tuple, list)) else self.action_vocab, hidden_from_steps=list(self.hidden_from_steps),
            hidden_as=list(self.hidden_as) or None, step_bits=self.step_bits,
            step_shape=None if self.step_shape is None else list(self.step_shape))

    @classmethod
    def from_spec(cls, spec: TokenSpec, bit_head: bool = False, **sizes: Any) -> "TransformerConfig":
        """The network for a domain's ``spec``, with the sizes given (``d_model``, ``window``, ...);
        ``bit_head`` predicts bit-vector cells bit by bit (needs ``spec.step_bits``)."""
        return cls(state_vocab=spec.state_vocab, step_vocab=spec.step_vocab, action_vocab=spec.action_vocab,
                   hidden_from_steps=tuple(spec.hidden_from_steps), hidden_as=tuple(spec.hidden_as or ()),
                   step_bits=spec.step_bits if bit_head else 0,
                   step_shape=None if spec.step_shape is None else tuple(spec.step_shape), **sizes)

    @property
    def action_bins(self) -> tuple[int, ...]:
        """Bins of each of the action's D tokens."""
        return tuple(self.action_vocab) if isinstance(self.action_vocab, (tuple, list)) else (self.action_vocab,)

    @property
    def start_token(self) -> int:
        """The start block's token (one past the step vocabulary)."""
        return self.step_vocab


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
        self.sink = nn.Parameter(torch.zeros(2, 1, 1, cfg.n_heads, e))

    def qkv(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # h: (..., T, d) -> three (..., T, heads, d/heads)
        q, k, v = self.qkv_proj(self.ln1(h)).chunk(3, dim=-1)
        shape = (*h.shape[:-1], self.n_heads, h.shape[-1] // self.n_heads)
        return q.reshape(shape), k.reshape(shape), v.reshape(shape)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        # q: (M, Tq, h, e); k, v: (M, Tk, h, e); mask: (M, Tk) bool, True = visible;
        # bias: (h, Tq, Tk) float, added to the attention logits
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


def distance_bias(q_grid: tuple[int, int], k_grid: tuple[int, int], n_heads: int, device: torch.device) -> Tensor:
    """2-D ALiBi: head i adds -slope_i * (Manhattan distance) between the tokens of two grids
    that share their origin (top left), (heads, Nq, Nk).

    Slopes run geometrically from 1 (local heads) to 1/2**(heads-1) (near-global heads).
    A relative position: the same model runs on any grid size."""
    def coords(h: int, w: int) -> tuple[Tensor, Tensor]:
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        return ys.flatten(), xs.flatten()

    (yq, xq), (yk, xk) = coords(*q_grid), coords(*k_grid)
    dist = (yq[:, None] - yk[None]).abs() + (xq[:, None] - xk[None]).abs()  # (Nq, Nk)
    slopes = 2.0 ** -torch.arange(n_heads, device=device, dtype=torch.float32)
    return -slopes[:, None, None] * dist[None].float()


def windows(t: Tensor, w: int) -> Tensor:
    """For each block b, blocks b-w+1..b (zero-padded before the first): (B, K, ...) -> (B, K, w, ...)."""
    k = t.shape[1]
    pad = t.new_zeros((t.shape[0], w - 1, *t.shape[2:]))
    padded = torch.cat([pad, t], dim=1)  # (B, K+w-1, ...)
    idx = torch.arange(k, device=t.device)[:, None] + torch.arange(w, device=t.device)[None]  # (K, w)
    return padded[:, idx]


class CategoricalCells(nn.Module):
    """A cell's outputs are logits over the step vocabulary (V of them)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.n_outputs = vocab

    def log_probs(self, out: Tensor) -> Tensor:
        """(..., V) -> (..., V) logits (unnormalised: argmax and cross-entropy need no more)."""
        return out

    def nll(self, out: Tensor, target: Tensor) -> Tensor:
        """(T, V), (T,) -> -log p(target) (T,), 0 where the target is negative (ignored)."""
        nll = F.cross_entropy(out, target.clamp(min=0), reduction="none")
        return torch.where(target >= 0, nll, torch.zeros_like(nll))

    def argmax(self, out: Tensor) -> Tensor:
        return out.argmax(-1)


class BitCells(nn.Module):
    """A cell whose tokens 0 .. 2**B - 1 are B-bit vectors and 2**B .. 2**B + S - 1 symbols:
    outputs (1 + S + B) = logits over ("bits", symbol 0, ..., symbol S-1), then B bit logits.
    p(bit vector v) = p(bits) * prod_b p(bit b = v_b); p(symbol s) = p(s)."""

    def __init__(self, vocab: int, bits: int) -> None:
        super().__init__()
        self.n_bits, self.n_symbols = bits, vocab - 2**bits
        self.n_outputs = 1 + self.n_symbols + bits
        ids = torch.arange(2**bits)
        self.register_buffer("table", ((ids[:, None] >> torch.arange(bits)) & 1).float(),
                             persistent=False)  # (2**B, B): bit b of each bit-vector id

    def log_probs(self, out: Tensor) -> Tensor:
        """(..., 1 + S + B) -> log-probabilities over the step vocabulary (..., 2**B + S)."""
        kind = out[..., : 1 + self.n_symbols].log_softmax(-1)  # (..., 1 + S): "bits", then the symbols
        bit = out[..., 1 + self.n_symbols :]  # (..., B)
        table = self.table.to(out.dtype)
        vectors = F.logsigmoid(bit) @ table.T + F.logsigmoid(-bit) @ (1 - table).T  # (..., 2**B)
        return torch.cat([kind[..., :1] + vectors, kind[..., 1:]], -1)

    def nll(self, out: Tensor, target: Tensor) -> Tensor:
        """(T, 1 + S + B), (T,) -> -log p(target) (T,), 0 where ignored: equal to the
        cross-entropy over :meth:`log_probs`'s table without building its 2**B columns."""
        kind = out[:, : 1 + self.n_symbols].log_softmax(-1)  # (T, 1 + S)
        bit = out[:, 1 + self.n_symbols :]  # (T, B)
        t = target.clamp(min=0)
        is_vector = t < 2**self.n_bits
        t_bits = ((t[:, None] >> torch.arange(self.n_bits, device=t.device)) & 1).bool()  # (T, B)
        vector_lp = kind[:, 0] + torch.where(t_bits, F.logsigmoid(bit), F.logsigmoid(-bit)).sum(-1)
        symbol = (t - 2**self.n_bits + 1).clamp(1, self.n_symbols) if self.n_symbols else torch.zeros_like(t)
        symbol_lp = kind.gather(1, symbol[:, None])[:, 0]
        return torch.where(target >= 0, -torch.where(is_vector, vector_lp, symbol_lp), torch.zeros_like(vector_lp))

    def argmax(self, out: Tensor) -> Tensor:
        """(..., 1 + S + B) -> the most likely token (...,): the best bit vector sets each bit
        to its likelier value and competes with the symbols through p(bits)."""
        # log p(bits) and log p(symbol) share log_softmax's normaliser: compare the raw logits
        bit = out[..., 1 + self.n_symbols :]
        vector = (bit > 0).long()  # (..., B)
        vector_id = (vector << torch.arange(self.n_bits, device=out.device)).sum(-1)
        vector_lp = out[..., 0] + F.logsigmoid(bit.abs()).sum(-1)  # log p of the best vector, unnormalised
        if not self.n_symbols:
            return vector_id
        sym_lp, sym = out[..., 1 : 1 + self.n_symbols].max(-1)
        return torch.where(vector_lp >= sym_lp, vector_id, sym + 2**self.n_bits)


@dataclass
class _Streams:
    """The teacher-forced pass's hidden states, one stream per kind of block, and what each
    attends to (built by :meth:`ProcedureTransformer._embed_pass`)."""

    hs: Tensor  # (B, Ns, d) the state block
    hc: Tensor | None  # (B, Ns, d) the context block (the state as step blocks see it), where it differs
    hq: Tensor  # (B, D, d) the action's query tokens
    state_bias: Tensor  # (heads, Ns, Ns)
    query_sees_state: Tensor  # (B, Ns) bool: the queries are hosted at the state block
    hx: Tensor | None = None  # (B, K, N, d) the step blocks
    w: int = 1  # step blocks in a block's window
    step_mask: Tensor | None = None  # (B*K, Ns + w*N) bool, None: all visible
    step_bias: Tensor | None = None  # (heads, N, Ns + w*N)
    host: Tensor | None = None  # (B,) the step block hosting the queries (0 where the state does)
    host_valid: Tensor | None = None  # (B, w*N) bool: the host's window keys the queries see


class ProcedureTransformer(nn.Module):
    """State block, step blocks and the action's query tokens through one block-causal transformer."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        p = cfg.patch[0] * cfg.patch[1]
        extra = int(p > 1)  # one id for cells outside the grid, where a patch overhangs it
        self.step_in_vocab = cfg.step_vocab + 1  # step ids as inputs, and the start block's
        self.context_vocab = cfg.state_vocab + 1  # state ids as step cells see them, and "no state cell here"
        self.state_emb = nn.Embedding(p * cfg.state_vocab + extra, d)
        self.step_emb = nn.Embedding(p * self.step_in_vocab + extra, d)
        self.state_in_step_emb = nn.Embedding(p * self.context_vocab + extra, d)  # the context, per cell
        self.state_stem = GridStem(d, cfg.stem_kernel, cfg.stem_layers)
        self.step_stem = GridStem(d, cfg.stem_kernel, cfg.stem_layers)
        bins = cfg.action_bins
        self.action_query = nn.Parameter(torch.randn(len(bins), d) * 0.02)  # (D, d)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.cells = BitCells(cfg.step_vocab, cfg.step_bits) if cfg.step_bits else CategoricalCells(cfg.step_vocab)
        self.step_head = nn.Linear(d, p * self.cells.n_outputs)  # per cell of a patch: the cell head's outputs
        self.action_cells = CategoricalCells(max(bins))  # an action token is a cell over its bins
        self.action_head = nn.Linear(d, max(bins))
        # (D, max bins): True where a bin does not exist for that token (its logit is -inf)
        self.register_buffer("action_void", torch.arange(max(bins))[None] >= torch.tensor(bins)[:, None],
                             persistent=False)
        self._bins_differ = len(set(bins)) > 1
        # the context: state token t is seen as context_lut[t] by step blocks
        lut = torch.arange(cfg.state_vocab)
        lut[list(cfg.hidden_from_steps)] = torch.tensor(cfg.hidden_as or [0] * len(cfg.hidden_from_steps), dtype=torch.long)
        self.register_buffer("context_lut", lut, persistent=False)  # (state_vocab,)
        self._bias_cache: dict[tuple, Tensor] = {}

    @property
    def reusable(self) -> bool:
        """Whether a generated chain depends on the state only through :meth:`step_context`.

        Step blocks see the state only as its context (the state with ``hidden_from_steps``
        tokens blanked: per cell, and as the context block they attend to). With window 1,
        x_{l+1} = f(x_l, context), so states with the same context share the whole greedy
        chain, and a rollout continues the previous step's procedure instead of starting
        again (in a maze the context hides the agent, the one thing that moves)."""
        return self.cfg.window == 1

    def step_context(self, state: Tensor) -> Tensor:
        """The state as step blocks see it per cell: each ``hidden_from_steps`` token becomes its
        ``hidden_as`` token (token 0 by default)."""
        return self.context_lut[state] if self.cfg.hidden_from_steps else state

    def step_shape(self, state: Tensor) -> tuple[int, int]:
        """(Hx, Wx) of the step blocks that go with states (..., Hs, Ws)."""
        return self.cfg.step_shape if self.cfg.step_shape is not None else tuple(state.shape[-2:])

    def start_block(self, m: int, h: int, w: int, device: torch.device) -> Tensor:
        """M start blocks (M, Hx, Wx): the input whose output predicts x_0."""
        return torch.full((m, h, w), self.cfg.start_token, dtype=torch.long, device=device)

    def context_cells(self, state: Tensor, h: int, w: int) -> Tensor:
        """The state's cells (B, Hs, Ws) at an H x W step block's coordinates (B, H, W):
        cropped, and where the step grid is larger, the "no state cell" id."""
        hs, ws = state.shape[-2:]
        if (hs, ws) == (h, w):
            return state
        out = state.new_full((*state.shape[:-2], h, w), self.cfg.state_vocab)
        out[..., : min(h, hs), : min(w, ws)] = state[..., : min(h, hs), : min(w, ws)]
        return out

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

    def step_logits(self, hidden: Tensor, h: int, w: int, raw: bool = False) -> Tensor:
        """Final hidden states of a block's tokens (..., H'*W', d) -> per-cell outputs (..., H*W, V):
        the cell head's log-probabilities over the vocabulary, or with ``raw`` its own outputs
        (a bit head's 1 + S + B per cell), for :meth:`cell_nll` and :meth:`cell_argmax`."""
        out = self.step_head(self.ln_f(hidden))  # (..., H'*W', ph*pw*outputs)
        ph, pw = self.cfg.patch
        if ph * pw > 1:
            *lead, n, _ = out.shape
            cells = self._to_cells(out.reshape(-1, n, ph * pw, self.cells.n_outputs), h, w)  # (M, H, W, c)
            out = cells.reshape(*lead, h * w, self.cells.n_outputs)
        return out if raw else self.cells.log_probs(out)

    def cell_nll(self, out: Tensor, target: Tensor) -> Tensor:
        """Raw per-cell outputs (T, c) and target tokens (T,) -> -log p(target) (T,), 0 where ignored."""
        return self.cells.nll(out, target)

    def cell_argmax(self, out: Tensor) -> Tensor:
        """Raw per-cell outputs (..., c) -> the most likely token (...,)."""
        return self.cells.argmax(out)

    def decode(self, hidden: Tensor, h: int, w: int) -> Tensor:
        """Greedy block (M, H, W) from its tokens' final hidden states (M, H'*W', d)."""
        ph, pw = self.cfg.patch
        out = self.step_head(self.ln_f(hidden)).unflatten(-1, (ph * pw, self.cells.n_outputs))  # (M, H'*W', P, c)
        return self._to_cells(self.cells.argmax(out), h, w)  # (M, H'*W', P) -> (M, H, W)

    def action_logits(self, hq: Tensor) -> Tensor:
        """Final hidden states of the D query tokens (M, D, d) -> logits (M, D, max bins),
        -inf at the bins a token does not have."""
        out = self.action_head(self.ln_f(hq))
        return out.masked_fill(self.action_void, float("-inf")) if self._bins_differ else out

    # ----------------------------------------------------------------- embeddings
    def bias(self, shape: tuple[int, int], key_blocks: int, device: torch.device,
             context: tuple[int, int] | None = None) -> Tensor:
        """Relative-position bias of an H x W block's tokens (N of them) over the context block
        (cells ``context``, if given; Nc tokens) and then ``key_blocks`` blocks of the block's own
        shape, (heads, N, Nc + key_blocks*N); a constant, built once per shapes and key count."""
        key = (tuple(shape), key_blocks, context, str(device))
        if key not in self._bias_cache:
            grid = self.grid(*shape)
            own = distance_bias(grid, grid, self.cfg.n_heads, device).repeat(1, 1, key_blocks)
            if context is not None:
                own = torch.cat([distance_bias(grid, self.grid(*context), self.cfg.n_heads, device), own], -1)
            self._bias_cache[key] = own
        return self._bias_cache[key]

    def embed_state(self, state: Tensor) -> Tensor:
        # state: (B, H, W) -> (B, N, d), N tokens (H*W without patches)
        return self.state_stem(self._embed(self.state_emb, state, self.cfg.state_vocab))

    def embed_steps(self, steps: Tensor, state: Tensor, host: Tensor | None = None) -> Tensor:
        # steps: (B, K, Hx, Wx), state: (B, Hs, Ws), host: (B, K) bool -> (B, K, N, d)
        # Each block sees the state's context per cell; the block hosting the action query
        # sees the full state (in a maze: where the agent stands, to read its action there).
        b, k, h, w = steps.shape
        gh, gw = self.grid(h, w)
        vocab = self.context_vocab
        e = self._embed(self.step_emb, steps, self.step_in_vocab)  # (B, K, H', W', d)
        ctx = self._embed(self.state_in_step_emb, self.context_cells(self.step_context(state), h, w), vocab)[:, None]
        if host is not None and self.cfg.hidden_from_steps:
            full = self._embed(self.state_in_step_emb, self.context_cells(state, h, w), vocab)[:, None]
            ctx = torch.where(host[:, :, None, None, None], full, ctx)  # (B, K, H', W', d)
        return self.step_stem((e + ctx).reshape(b * k, gh, gw, -1)).reshape(b, k, gh * gw, -1)

    # ----------------------------------------------------------------- teacher forcing
    def forward(self, state: Tensor, steps: Tensor | None = None, step_valid: Tensor | None = None,
                action_host: Tensor | None = None, step_segment: Tensor | None = None, raw: bool = False
                ) -> tuple[Tensor | None, Tensor]:
        """Teacher-forced pass.

        state (B, Hs, Ws); steps (B, K, Hx, Wx) or None (block 0 of a procedure is the start
        block); step_valid (B, K) bool (padding blocks False); action_host (B,) long, -1 for
        the state block or a step index; step_segment (B, K) long: a block never sees a
        block of another segment (several independent pieces of procedure can share one
        example).
        Returns per-cell outputs of the step blocks (B, K, Hx*Wx, Vx) predicting the next
        step (see :meth:`step_logits` for ``raw``; None without steps), and the action
        logits (B, D, A).
        """
        x = self._embed_pass(state, steps, step_valid, action_host, step_segment)
        for i, layer in enumerate(self.layers):
            self._layer_pass(layer, x, last=i == len(self.layers) - 1)
        step_logits = None if x.hx is None else self.step_logits(x.hx, *steps.shape[-2:], raw)
        return step_logits, self.action_logits(x.hq)  # (B, K, Hx*Wx, Vx), (B, D, A)

    def _embed_pass(self, state: Tensor, steps: Tensor | None, step_valid: Tensor | None,
                    action_host: Tensor | None, step_segment: Tensor | None) -> "_Streams":
        """The teacher-forced pass's inputs: every stream embedded, and what each attends to."""
        bsz, h_s, w_s = state.shape
        n_s = math.prod(self.grid(h_s, w_s))  # tokens of the state block
        dev = state.device
        has_steps = steps is not None and steps.shape[1] > 0
        separate_context = bool(self.cfg.hidden_from_steps) and has_steps  # BC needs no context
        if action_host is None:
            action_host = torch.full((bsz,), -1, dtype=torch.long, device=dev)
        x = _Streams(hs=self.embed_state(state),  # (B, Ns, d)
                     hc=self.embed_state(self.step_context(state)) if separate_context else None,  # (B, Ns, d)
                     hq=self.action_query.expand(bsz, len(self.cfg.action_bins), -1),  # (B, D, d)
                     state_bias=self.bias((h_s, w_s), 1, dev),
                     query_sees_state=(action_host < 0)[:, None].expand(bsz, n_s))  # (B, Ns): hosted at the state
        if not has_steps:
            return x
        k_blocks, h_x, w_x = steps.shape[1:]
        n = math.prod(self.grid(h_x, w_x))  # tokens per step block
        is_host = torch.arange(k_blocks, device=dev)[None] == action_host[:, None]  # (B, K)
        x.hx = self.embed_steps(steps, state, is_host)  # (B, K, N, d)
        x.w = w = k_blocks if self.cfg.window is None else min(self.cfg.window, k_blocks)
        if step_valid is None:
            step_valid = torch.ones(bsz, k_blocks, dtype=torch.bool, device=dev)
        win_valid = windows(step_valid, w)  # (B, K, w)
        if step_segment is not None:
            win_valid = win_valid & (windows(step_segment, w) == step_segment[:, :, None])
        win_valid = win_valid.repeat_interleave(n, dim=2)  # (B, K, w*N)
        step_mask = torch.cat([win_valid.new_ones(bsz, k_blocks, n_s), win_valid], dim=2)  # context, window
        # With a window of one block, a block's mask hides only a padding block's keys from
        # that padding block itself, whose outputs nothing reads (no target, no other block):
        # no mask is then exact for every real block, and it spares building a (B*K, heads,
        # N, keys) float mask per layer (a sixth of a maze training step's time).
        x.step_mask = None if w == 1 or bool(step_mask.all()) else step_mask.flatten(0, 1)  # (B*K, keys)
        x.step_bias = self.bias((h_x, w_x), w, dev, context=(h_s, w_s))
        x.host = action_host.clamp(min=0)
        x.host_valid = win_valid[torch.arange(bsz, device=dev), x.host] & (action_host >= 0)[:, None]  # (B, w*N)
        return x

    @staticmethod
    def _layer_pass(layer: Layer, x: "_Streams", last: bool = False) -> None:
        """One layer over every stream of ``x``, in place: the state and the context block
        attend within themselves, each step block to the context and its window, and the
        queries to their host (the state block, or a step block's window) and each other.
        Nothing reads the state's and the context's outputs, only their keys and values, so
        the ``last`` layer skips their attention and MLP."""
        qs, ks, vs = layer.qkv(x.hs)  # (B, Ns, h, e)
        qq, kq, vq = layer.qkv(x.hq)  # (B, D, h, e)
        if x.hc is not None:
            qc, kc, vc = layer.qkv(x.hc)
            if not last:
                x.hc = layer.finish(x.hc, layer.attend(qc, kc, vc, None, x.state_bias))
        else:
            kc, vc = ks, vs
        q_keys, q_vals, q_mask = [ks], [vs], [x.query_sees_state]
        if x.hx is not None:
            bsz, k_blocks = x.hx.shape[:2]
            qx, kx, vx = layer.qkv(x.hx)  # (B, K, N, h, e)
            kw = windows(kx, x.w).flatten(2, 3)  # (B, K, w*N, h, e)
            vw = windows(vx, x.w).flatten(2, 3)
            keys = torch.cat([kc[:, None].expand(-1, k_blocks, -1, -1, -1), kw], dim=2)
            vals = torch.cat([vc[:, None].expand(-1, k_blocks, -1, -1, -1), vw], dim=2)
            att_x = layer.attend(qx.flatten(0, 1), keys.flatten(0, 1), vals.flatten(0, 1), x.step_mask, x.step_bias)
            ar = torch.arange(bsz, device=kw.device)
            q_keys.append(kw[ar, x.host])
            q_vals.append(vw[ar, x.host])
            q_mask.append(x.host_valid)
        q_keys.append(kq)
        q_vals.append(vq)
        q_mask.append(torch.ones(kq.shape[:2], dtype=torch.bool, device=kq.device))
        att_q = layer.attend(qq, torch.cat(q_keys, 1), torch.cat(q_vals, 1), torch.cat(q_mask, 1))
        if not last:
            x.hs = layer.finish(x.hs, layer.attend(qs, ks, vs, None, x.state_bias))
        x.hq = layer.finish(x.hq, att_q)
        if x.hx is not None:
            x.hx = layer.finish(x.hx, att_x.reshape(x.hx.shape))

    # ----------------------------------------------------------------- single passes, for generation
    def state_pass(self, state: Tensor, keys_only: bool = False) -> tuple[Tensor | None, KV]:
        """A state (or context) block (B, H, W) through all layers: its output (B, N, d) and
        per-layer keys/values. ``keys_only``: only the keys/values are wanted, so the last
        layer's attention and MLP (which feed the output alone) are skipped, output None."""
        _, h, w = state.shape
        bias = self.bias((h, w), 1, state.device)
        hs = self.embed_state(state)
        kv = []
        for i, layer in enumerate(self.layers):
            q, k, v = layer.qkv(hs)
            kv.append((k, v))
            if keys_only and i == len(self.layers) - 1:
                return None, kv
            hs = layer.finish(hs, layer.attend(q, k, v, None, bias))
        return hs, kv

    def step_pass(self, hx: Tensor, context_kv: KV, window_kv: list[KV], bias: Tensor, host: bool = False
                  ) -> tuple[Tensor | None, KV, KV]:
        """One embedded step block (M, N, d) through all layers after its cached window
        ``window_kv`` (per layer, the earlier blocks' keys/values), attending to the context.

        Returns its output, its own per-layer keys/values, and (``host``: the block hosts
        the action query) the per-layer window keys/values the query reads. A host block's
        output is not needed, so its last layer's attention and MLP are skipped (None)."""
        own, query_ctx = [], []
        for i, layer in enumerate(self.layers):
            q, k, v = layer.qkv(hx)
            own_k = torch.cat([c[0] for c in window_kv[i]] + [k], 1)  # window blocks, (M, w*N, h, e)
            own_v = torch.cat([c[1] for c in window_kv[i]] + [v], 1)
            own.append((k, v))
            if host:
                query_ctx.append((own_k, own_v))
                if i == len(self.layers) - 1:
                    return None, own, query_ctx
            keys = torch.cat([context_kv[i][0], own_k], 1)
            vals = torch.cat([context_kv[i][1], own_v], 1)
            hx = layer.finish(hx, layer.attend(q, keys, vals, None, bias))
        return hx, own, query_ctx

    def query_pass(self, context: KV) -> Tensor:
        """The D action queries over per-layer keys/values (M, T, h, e) of what they read:
        logits (M, D, A)."""
        m = context[0][0].shape[0]
        hq = self.action_query.expand(m, -1, -1)  # (M, D, d)
        for layer, (k, v) in zip(self.layers, context):
            q, kq, vq = layer.qkv(hq)
            hq = layer.finish(hq, layer.attend(q, torch.cat([k, kq], 1), torch.cat([v, vq], 1)))
        return self.action_logits(hq)
