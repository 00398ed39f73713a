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

No absolute position embedding by default: a small convolutional stem gives each token
its neighbourhood, so a model trained on 16x16 grids runs unchanged on 31x31 ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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

    def __post_init__(self) -> None:
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

    def qkv(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # h: (..., T, d) -> three (..., T, heads, d/heads)
        q, k, v = self.qkv_proj(self.ln1(h)).chunk(3, dim=-1)
        shape = (*h.shape[:-1], self.n_heads, h.shape[-1] // self.n_heads)
        return q.reshape(shape), k.reshape(shape), v.reshape(shape)

    @staticmethod
    def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        # q: (M, Tq, h, e); k, v: (M, Tk, h, e); mask: (M, Tk) bool, True = visible
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attn_mask
        )  # (M, h, Tq, e)
        return out.transpose(1, 2).flatten(-2)  # (M, Tq, d)

    def finish(self, h: Tensor, att: Tensor) -> Tensor:
        h = h + self.drop(self.out_proj(att))
        return h + self.drop(self.mlp(self.ln2(h)))


def windows(t: Tensor, w: int) -> Tensor:
    """For each block b, blocks b-w+1..b (zero-padded before the first): (B, K, ...) -> (B, K, w, ...)."""
    k = t.shape[1]
    pad = t.new_zeros((t.shape[0], w - 1, *t.shape[2:]))
    padded = torch.cat([pad, t], dim=1)  # (B, K+w-1, ...)
    idx = torch.arange(k, device=t.device)[:, None] + torch.arange(w, device=t.device)[None]  # (K, w)
    return padded[:, idx]


@dataclass
class Generation:
    """Output of :meth:`ProcedureTransformer.generate`."""

    actions: Tensor  # (B,) long
    action_logits: Tensor  # (B, A)
    steps: Tensor  # (B, Lmax, H, W) long, -1 past each sequence's length
    lengths: Tensor  # (B,) long: number of generated step blocks
    forward_blocks: int  # step blocks run through the network, summed over the batch


class ProcedureTransformer(nn.Module):
    """State block, step blocks and an action query through one block-causal transformer."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.state_emb = nn.Embedding(cfg.state_vocab, d)
        self.step_emb = nn.Embedding(cfg.step_vocab, d)
        self.state_in_step_emb = nn.Embedding(cfg.state_vocab, d) if cfg.state_in_steps else None
        self.state_stem = GridStem(d, cfg.stem_kernel, cfg.stem_layers)
        self.step_stem = GridStem(d, cfg.stem_kernel, cfg.stem_layers)
        self.action_query = nn.Parameter(torch.randn(d) * 0.02)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.step_head = nn.Linear(d, cfg.step_vocab)
        self.action_head = nn.Linear(d, cfg.action_vocab)

    # ----------------------------------------------------------------- embeddings
    def _pos(self, h: int, w: int, device: torch.device) -> Tensor | float:
        return sincos_2d(h, w, self.cfg.d_model, device) if self.cfg.pos_emb == "sincos" else 0.0

    def embed_state(self, state: Tensor) -> Tensor:
        # state: (B, H, W) -> (B, N, d)
        _, h, w = state.shape
        return self.state_stem(self.state_emb(state) + self._pos(h, w, state.device))

    def embed_steps(self, steps: Tensor, state: Tensor) -> Tensor:
        # steps: (B, K, H, W), state: (B, H, W) -> (B, K, N, d)
        b, k, h, w = steps.shape
        e = self.step_emb(steps) + self._pos(h, w, steps.device)  # (B, K, H, W, d)
        if self.state_in_step_emb is not None:
            e = e + self.state_in_step_emb(state)[:, None]
        return self.step_stem(e.reshape(b * k, h, w, -1)).reshape(b, k, h * w, -1)

    # ----------------------------------------------------------------- teacher forcing
    def forward(
        self,
        state: Tensor,
        steps: Tensor | None = None,
        step_valid: Tensor | None = None,
        action_host: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Teacher-forced pass.

        state (B, H, W); steps (B, K, H, W) or None; step_valid (B, K) bool (padding
        blocks False); action_host (B,) long, -1 for the state block or a step index.
        Returns logits: from the state block (B, N, Vx) predicting step 0, from the step
        blocks (B, K, N, Vx) predicting the next step, and the action (B, A).
        """
        bsz = state.shape[0]
        n = state.shape[1] * state.shape[2]
        hs = self.embed_state(state)  # (B, N, d)
        hq = self.action_query.expand(bsz, 1, -1)  # (B, 1, d)
        if action_host is None:
            action_host = torch.full((bsz,), -1, dtype=torch.long, device=state.device)
        hx = None
        if steps is not None and steps.shape[1] > 0:
            hx = self.embed_steps(steps, state)  # (B, K, N, d)
            k_blocks = steps.shape[1]
            w = k_blocks if self.cfg.window is None else min(self.cfg.window, k_blocks)
            if step_valid is None:
                step_valid = torch.ones(bsz, k_blocks, dtype=torch.bool, device=state.device)
            win_valid = windows(step_valid, w).repeat_interleave(n, dim=2)  # (B, K, w*N)
            step_mask = torch.cat([win_valid.new_ones(bsz, k_blocks, n), win_valid], dim=2)
            step_mask = None if bool(step_mask.all()) else step_mask.flatten(0, 1)  # (B*K, (1+w)N)
            ar = torch.arange(bsz, device=state.device)
            host = action_host.clamp(min=0)
            host_valid = win_valid[ar, host] & (action_host >= 0)[:, None]  # (B, w*N)
        else:
            host_valid = None

        for layer in self.layers:
            qs, ks, vs = layer.qkv(hs)  # (B, N, h, e)
            qq, kq, vq = layer.qkv(hq)  # (B, 1, h, e)
            q_keys, q_vals = [ks], [vs]
            q_mask = [torch.ones(bsz, n, dtype=torch.bool, device=state.device)]
            if hx is not None:
                qx, kx, vx = layer.qkv(hx)  # (B, K, N, h, e)
                kw = windows(kx, w).flatten(2, 3)  # (B, K, w*N, h, e)
                vw = windows(vx, w).flatten(2, 3)
                keys = torch.cat([ks[:, None].expand(-1, k_blocks, -1, -1, -1), kw], dim=2)
                vals = torch.cat([vs[:, None].expand(-1, k_blocks, -1, -1, -1), vw], dim=2)
                att_x = layer.attend(qx.flatten(0, 1), keys.flatten(0, 1), vals.flatten(0, 1), step_mask)
                q_keys.append(kw[ar, host])
                q_vals.append(vw[ar, host])
                q_mask.append(host_valid)
            q_keys.append(kq)
            q_vals.append(vq)
            q_mask.append(torch.ones(bsz, 1, dtype=torch.bool, device=state.device))
            att_q = layer.attend(qq, torch.cat(q_keys, 1), torch.cat(q_vals, 1), torch.cat(q_mask, 1))
            att_s = layer.attend(qs, ks, vs)
            hs = layer.finish(hs, att_s)
            hq = layer.finish(hq, att_q)
            if hx is not None:
                hx = layer.finish(hx, att_x.reshape(hx.shape))

        state_logits = self.step_head(self.ln_f(hs))  # (B, N, Vx)
        step_logits = None if hx is None else self.step_head(self.ln_f(hx))  # (B, K, N, Vx)
        action_logits = self.action_head(self.ln_f(hq[:, 0]))  # (B, A)
        return state_logits, step_logits, action_logits

    # ----------------------------------------------------------------- generation
    def _state_pass(self, state: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """State block through all layers: its output (B, N, d) and per-layer keys/values."""
        hs = self.embed_state(state)
        kv = []
        for layer in self.layers:
            q, k, v = layer.qkv(hs)
            hs = layer.finish(hs, layer.attend(q, k, v))
            kv.append((k, v))
        return hs, kv

    def _query_pass(self, context: list[tuple[Tensor, Tensor]]) -> Tensor:
        """Action query over per-layer context keys/values (M, T, h, e): action logits (M, A)."""
        m = context[0][0].shape[0]
        hq = self.action_query.expand(m, 1, -1)
        for layer, (k, v) in zip(self.layers, context):
            q, kq, vq = layer.qkv(hq)
            hq = layer.finish(hq, layer.attend(q, torch.cat([k, kq], 1), torch.cat([v, vq], 1)))
        return self.action_head(self.ln_f(hq[:, 0]))

    @torch.no_grad()
    def act_from_state(self, state: Tensor) -> Tensor:
        """Action logits (B, A) with the query hosted at the state block (BC, Aux BC)."""
        _, kv = self._state_pass(state)
        return self._query_pass(kv)

    @torch.no_grad()
    def generate(self, state: Tensor, max_steps: int, stop_fn=None) -> Generation:
        """Greedy, KV-cached generation of x_0, x_1, ... then the action, batched over B.

        A sequence stops at the first block x_l for which ``stop_fn(state, x_l)`` is True
        (the domain's rule), at a fixed point (the last ``window`` blocks repeat, so greedy
        decoding can never change again), or after ``max_steps`` blocks; its action is then
        read by the query hosted at x_l. Finished sequences leave the batch, so late rounds
        cost only what is still running.
        """
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        bsz, h, w_grid = state.shape
        device = state.device
        window = self.cfg.window
        hs, state_kv = self._state_pass(state)
        x = self.step_head(self.ln_f(hs)).argmax(-1).reshape(bsz, h, w_grid)  # x_0, (B, H, W)

        actions = torch.zeros(bsz, dtype=torch.long, device=device)
        action_logits = torch.zeros(bsz, self.cfg.action_vocab, device=device)
        steps_out = torch.full((bsz, max_steps, h, w_grid), -1, dtype=torch.long, device=device)
        lengths = torch.zeros(bsz, dtype=torch.long, device=device)
        active = torch.arange(bsz, device=device)
        cache: list[list[tuple[Tensor, Tensor]]] = [[] for _ in self.layers]  # previous blocks
        repeats = torch.zeros(bsz, dtype=torch.long, device=device)  # consecutive equal blocks
        prev = None
        forward_blocks = 0
        for l in range(max_steps):
            st = state[active]
            hx = self.embed_steps(x[:, None], st)[:, 0]  # (Ba, N, d)
            forward_blocks += len(active)
            context = []  # per layer, keys/values the query hosted here would see
            for i, layer in enumerate(self.layers):
                q, k, v = layer.qkv(hx)
                keys = torch.cat([state_kv[i][0]] + [c[0] for c in cache[i]] + [k], 1)
                vals = torch.cat([state_kv[i][1]] + [c[1] for c in cache[i]] + [v], 1)
                hx = layer.finish(hx, layer.attend(q, keys, vals))
                context.append((keys, vals))
                if window is None:
                    cache[i] = cache[i] + [(k, v)]
                elif window > 1:
                    cache[i] = (cache[i] + [(k, v)])[-(window - 1) :]
            steps_out[active, l] = x
            lengths[active] = l + 1
            if prev is not None:
                repeats = torch.where((x == prev).flatten(1).all(1), repeats + 1, torch.zeros_like(repeats))
            stop = repeats >= (window if window is not None else max_steps + 1)
            if stop_fn is not None:
                stop = stop | stop_fn(st, x).to(device)
            if l == max_steps - 1:
                stop = torch.ones_like(stop)
            if stop.any():
                logits = self._query_pass([(k[stop], v[stop]) for k, v in context])
                action_logits[active[stop]] = logits.float()
                actions[active[stop]] = logits.argmax(-1)
            keep = ~stop
            if not keep.any():
                break
            nxt = self.step_head(self.ln_f(hx[keep])).argmax(-1).reshape(-1, h, w_grid)
            active, prev, x, repeats = active[keep], x[keep], nxt, repeats[keep]
            state_kv = [(k[keep], v[keep]) for k, v in state_kv]
            cache = [[(k[keep], v[keep]) for k, v in c] for c in cache]
        return Generation(actions, action_logits, steps_out[:, : int(lengths.max())], lengths, forward_blocks)
