"""Greedy, KV-cached, batched generation of a procedure and the action it leads to.

A sequence stops at the first block x_l for which the domain's ``stop_fn(state, x_l)`` is
True, at a fixed point (the last ``window`` blocks repeat, so greedy decoding can never
change again), or after ``max_steps`` blocks; its action (D tokens) is then read by the
queries hosted at x_l. x_0 is decoded from one pass of the start block. Finished sequences leave the batch, so late
rounds cost only what is still running. Whether a block ends its sequence depends on the block alone, so it is
known before the block's pass, and each block runs through the network once: a block
that goes on for the next block's logits, a block that ends for the keys and values the
action query reads.

With a :attr:`~ProcedureTransformer.reusable` model a sequence can resume from a
:class:`Chain` generated before under the same step context (a rollout's previous step):
the result is exactly what generating from scratch gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor

from pc_lightning.model.transformer import KV, ProcedureTransformer

StopFn = Callable[[Tensor, Tensor], Tensor]  # (state (M, Hs, Ws), block (M, Hx, Wx)) -> (M,) bool


@dataclass
class Chain:
    """Every block generated for one sequence, and the step context it was generated under."""

    blocks: Tensor  # (L, Hx, Wx) long
    context: Tensor  # (Hs, Ws) long, see ProcedureTransformer.step_context
    context_kv: KV | None = None  # per layer, the context block's (N, h, e) keys/values


@dataclass
class Generation:
    """Output of :func:`generate`."""

    actions: Tensor  # (B, D) long: the action's D tokens
    action_logits: Tensor  # (B, D, A)
    steps: Tensor  # (B, Lmax, Hx, Wx) long, -1 past each sequence's length
    lengths: Tensor  # (B,) long: number of step blocks up to the one hosting the action
    forward_blocks: int  # step blocks run through the network, summed over the batch
    make_chains: Callable[[], list[Chain]] = field(repr=False, default=list)

    @cached_property
    def chains(self) -> list[Chain]:
        """Per sequence, every block generated so far (reusable as a prefix); built on first use."""
        return self.make_chains()


def _rows(kv: KV, idx: Tensor | None) -> KV:
    """Per-layer keys/values of the sequences ``idx`` (None: all)."""
    if idx is None:
        return kv
    return [(k.index_select(0, idx), v.index_select(0, idx)) for k, v in kv]


@dataclass
class _Running:
    """The sequences still being generated, row m of every tensor being sequence ``active[m]``."""

    active: Tensor  # (M,) index into the batch
    x: Tensor  # (M, Hx, Wx) the block at position ``rounds``, not yet run through the network
    prev: Tensor  # (M, Hx, Wx) the block before it (-1: none)
    rounds: Tensor  # (M,) position of x in its sequence
    forced: Tensor  # (M,) bool: x must host the action (a resumed chain stopped there)
    repeats: Tensor  # (M,) consecutive equal blocks up to x
    context_kv: KV  # per layer, the context block's keys/values (M, N, h, e)
    cache: list[KV]  # per layer, the window's earlier blocks' keys/values

    def stops(self, state: Tensor, stop_fn: StopFn | None, window: int | None, max_steps: int) -> Tensor:
        """(M,) bool: the sequences whose current block ends them: the domain's rule on it
        (``state`` (M, Hs, Ws), the running ones'), a fixed point (the last ``window`` blocks
        repeat, so greedy decoding can never change again), the last allowed block, or a
        resumed chain's stop."""
        same = (self.x == self.prev).flatten(1).all(1)
        self.repeats = torch.where(same, self.repeats + 1, torch.zeros_like(self.repeats))
        stop = self.forced | (self.repeats >= (window if window is not None else max_steps + 1))
        stop |= self.rounds >= max_steps - 1
        if stop_fn is not None:
            stop |= stop_fn(state, self.x).to(stop.device)
        return stop

    def keep(self, rows: Tensor | None, x_keep: Tensor, nxt: Tensor, own: KV, window: int | None) -> None:
        """Go on with the sequences ``rows`` (index into the running ones, or None for all),
        whose current blocks ``x_keep`` (already selected) have keys/values ``own`` and
        whose next blocks are ``nxt``."""
        sel = (lambda t: t) if rows is None else (lambda t: t.index_select(0, rows))
        self.cache = [_rows(c, rows) for c in self.cache]
        if window is None:
            self.cache = [c + [kv] for c, kv in zip(self.cache, own)]
        elif window > 1:
            self.cache = [(c + [kv])[-(window - 1):] for c, kv in zip(self.cache, own)]
        self.active, self.prev, self.x = sel(self.active), x_keep, nxt
        self.rounds, self.forced, self.repeats = sel(self.rounds) + 1, sel(self.forced), sel(self.repeats)
        self.context_kv = _rows(self.context_kv, rows)


def _first_blocks(net: ProcedureTransformer, state: Tensor, kv: KV) -> tuple[Tensor, KV]:
    """x_0 (M, Hx, Wx) of states (M, Hs, Ws) whose state (or context) block gave keys/values
    ``kv``, from a start block's pass, and the start block's own per-layer keys/values (with a
    window > 1, x_0 sees the start block)."""
    h, w = net.step_shape(state)
    start = net.embed_steps(net.start_block(len(state), h, w, state.device)[:, None], state)[:, 0]  # (M, N, d)
    bias = net.bias((h, w), 1, state.device, context=tuple(state.shape[-2:]))
    hx, own, _ = net.step_pass(start, kv, [[] for _ in net.layers], bias)
    return net.decode(hx, h, w), own


def _context_pass(net: ProcedureTransformer, contexts: Tensor, prefixes: list[Chain | None] | None
                  ) -> tuple[Tensor, KV, KV | None, int]:
    """x_0 (B, Hx, Wx), the context block's per-layer keys/values and the start block's (see
    :func:`_first_blocks`; None where it did not run for every sequence, which happens only
    with a reusable, window-1 model that does not need them), taken from each sequence's
    chain where it was made under the same context, computed elsewhere; and the number of
    start blocks run."""
    bsz = len(contexts)
    cached = [b for b in range(bsz) if prefixes is not None and prefixes[b] is not None and net.reusable
              and prefixes[b].context_kv is not None and torch.equal(prefixes[b].context, contexts[b])]
    if not cached:
        _, kv = net.state_pass(contexts, keys_only=True)  # the context block's output is not needed
        x0, own = _first_blocks(net, contexts, kv)
        return x0, kv, own, bsz
    in_cache = set(cached)
    todo = [b for b in range(bsz) if b not in in_cache]
    x0 = torch.stack([prefixes[b].blocks[0] for b in cached])
    kv = [(torch.stack([prefixes[b].context_kv[i][0] for b in cached]),
           torch.stack([prefixes[b].context_kv[i][1] for b in cached])) for i in range(len(net.layers))]
    if todo:
        _, fresh = net.state_pass(contexts[todo], keys_only=True)
        x0 = torch.cat([x0, _first_blocks(net, contexts[todo], fresh)[0]])
        kv = [(torch.cat([k, fk]), torch.cat([v, fv])) for (k, v), (fk, fv) in zip(kv, fresh)]
        order = torch.tensor(cached + todo, device=contexts.device).argsort()
        x0, kv = x0[order], _rows(kv, order)
    return x0, kv, None, len(todo)


def _resume(run: _Running, state: Tensor, contexts: Tensor, prefixes: list[Chain | None], max_steps: int,
            stop_fn: StopFn | None, steps_out: Tensor) -> None:
    """Start each sequence whose chain was made under its context where that chain stops
    (a stop inside it: that block hosts the action) or ends (generation goes on)."""
    dev = state.device
    for b, chain in enumerate(prefixes):
        if chain is None or not torch.equal(chain.context, contexts[b]):
            continue
        blocks = chain.blocks[:max_steps]
        c = len(blocks)
        stops = torch.zeros(c, dtype=torch.bool, device=dev)
        if stop_fn is not None:
            stops |= stop_fn(state[b : b + 1].expand(c, -1, -1), blocks).to(dev)
        stops[1:] |= (blocks[1:] == blocks[:-1]).flatten(1).all(1)
        stops[max_steps - 1 :] = True
        hit = torch.nonzero(stops)
        last = int(hit[0]) if len(hit) else c - 1
        steps_out[b, :last] = blocks[:last]
        run.x[b], run.rounds[b], run.forced[b] = blocks[last], last, len(hit) > 0
        if last > 0:
            run.prev[b] = blocks[last - 1]


class _Output:
    """What generation has produced for every sequence of the batch: the blocks (grown as
    needed: ``max_steps`` can be far more than a procedure takes, a 31x31 maze allows 961
    blocks where a BFS takes ~100), their count, the action and the blocks run."""

    def __init__(self, bsz: int, shape: tuple[int, int], n_bins: tuple[int, ...], max_steps: int, longest: int,
                 device: torch.device) -> None:
        self.max_steps = max_steps
        self.steps = torch.full((bsz, min(max_steps, max(64, longest + 1)), *shape), -1, dtype=torch.long,
                                device=device)  # (B, capacity, Hx, Wx)
        self.lengths = torch.zeros(bsz, dtype=torch.long, device=device)  # (B,)
        self.actions = torch.zeros(bsz, len(n_bins), dtype=torch.long, device=device)  # (B, D)
        self.action_logits = torch.zeros(bsz, len(n_bins), max(n_bins), device=device)  # (B, D, A)
        self.forward_blocks = 0

    def write(self, run: _Running) -> None:
        """Each running sequence's current block at its position (doubling the capacity, up to max_steps)."""
        if len(run.rounds) and int(run.rounds.max()) >= self.steps.shape[1]:
            more = min(self.max_steps, 2 * self.steps.shape[1]) - self.steps.shape[1]
            self.steps = torch.cat([self.steps, self.steps.new_full((len(self.steps), more, *self.steps.shape[2:]), -1)], 1)
        self.steps[run.active, run.rounds] = run.x
        self.lengths[run.active] = run.rounds + 1


def _act(net: ProcedureTransformer, run: _Running, out: _Output, idx: Tensor, st: Tensor, bias: Tensor) -> None:
    """The running sequences ``idx`` stop at their current block, which hosts the action
    query: its pass (embedded with the full state ``st`` where step blocks otherwise see its
    context) gives only the keys/values the query reads."""
    hosts = torch.ones(len(idx), 1, dtype=torch.bool, device=st.device)
    _, _, query_ctx = net.step_pass(net.embed_steps(run.x[idx][:, None], st[idx], hosts)[:, 0],
                                    _rows(run.context_kv, idx), [_rows(c, idx) for c in run.cache], bias, host=True)
    logits = net.query_pass(query_ctx)  # (M, D, A)
    out.action_logits[run.active[idx]] = logits.float()
    out.actions[run.active[idx]] = logits.argmax(-1)
    out.forward_blocks += len(idx)


def _advance(net: ProcedureTransformer, run: _Running, out: _Output, rows: Tensor | None, st: Tensor,
             bias: Tensor) -> None:
    """The running sequences ``rows`` (None: all) go on: their current block's pass decodes the next."""
    x, st = (run.x, st) if rows is None else (run.x[rows], st[rows])
    hx = net.embed_steps(x[:, None], st)[:, 0]  # (M, N, d)
    hx, own, _ = net.step_pass(hx, _rows(run.context_kv, rows), [_rows(c, rows) for c in run.cache], bias)
    out.forward_blocks += len(x)
    run.keep(rows, x, net.decode(hx, *x.shape[-2:]), own, net.cfg.window)


def _start(net: ProcedureTransformer, state: Tensor, contexts: Tensor, max_steps: int, stop_fn: StopFn | None,
           prefixes: list[Chain | None] | None) -> tuple[_Running, _Output, KV]:
    """Every sequence at x_0, or where its chain was made under its context, where that chain
    stops or ends: the running rows, the output buffer, and the context block's keys/values."""
    bsz, dev, window = len(state), state.device, net.cfg.window
    if net.cfg.hidden_from_steps:  # step blocks see the context block, which can come from a chain
        x0, context_kv, start_kv, starts = _context_pass(net, contexts, prefixes)
    else:
        _, context_kv = net.state_pass(state, keys_only=True)
        x0, start_kv = _first_blocks(net, state, context_kv)  # (B, Hx, Wx)
        starts = bsz
    longest = max((len(c.blocks) for c in prefixes or [] if c is not None), default=0)
    out = _Output(bsz, tuple(x0.shape[-2:]), net.cfg.action_bins, max_steps, longest, dev)
    out.forward_blocks = starts  # the start blocks run
    cache = [[] for _ in net.layers]
    if start_kv is not None and window != 1:  # x_0's window holds the start block
        cache = [[kv] for kv in start_kv]
    zeros = torch.zeros(bsz, dtype=torch.long, device=dev)
    run = _Running(active=torch.arange(bsz, device=dev), x=x0.clone(), prev=torch.full_like(x0, -1), rounds=zeros,
                   forced=zeros.bool(), repeats=zeros.clone(), context_kv=context_kv, cache=cache)
    if prefixes is not None and net.reusable:
        _resume(run, state, contexts, prefixes, max_steps, stop_fn, out.steps)
    return run, out, context_kv


@torch.no_grad()
def generate(net: ProcedureTransformer, state: Tensor, max_steps: int, stop_fn: StopFn | None = None,
             prefixes: list[Chain | None] | None = None) -> Generation:
    """Greedy generation of x_0, x_1, ... then the action for states (B, Hs, Ws) (module docstring).

    ``prefixes`` (with a reusable model): per sequence, a chain this model generated before
    (``Generation.chains``); where it was made under this state's step context it is this
    state's chain too, so generation resumes after it, or stops inside it."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    bsz, window, dev = len(state), net.cfg.window, state.device
    (h, w), state_shape = net.step_shape(state), tuple(state.shape[-2:])
    contexts = net.step_context(state)  # (B, Hs, Ws)
    run, out, context_kv = _start(net, state, contexts, max_steps, stop_fn, prefixes)
    step_bias = net.bias((h, w), 1, dev, context=state_shape) if window == 1 else None  # context + the block
    for _ in range(max_steps):
        st = state[run.active]
        out.write(run)
        stop = run.stops(st, stop_fn, window, max_steps)
        bias = step_bias if step_bias is not None else net.bias((h, w), 1 + len(run.cache[0]), dev, state_shape)
        n_stop = int(stop.sum())
        if n_stop:
            _act(net, run, out, stop.nonzero().squeeze(1), st, bias)
        if n_stop == len(stop):
            break
        _advance(net, run, out, (~stop).nonzero().squeeze(1) if n_stop else None, st, bias)
    return Generation(out.actions, out.action_logits, out.steps[:, : int(out.lengths.max())], out.lengths,
                      out.forward_blocks, lambda: _chains(net, out, contexts, context_kv, prefixes))


def _chains(net: ProcedureTransformer, out: _Output, contexts: Tensor, context_kv: KV,
            prefixes: list[Chain | None] | None) -> list[Chain]:
    """Per sequence, every block generated so far and its context (a Python loop over the
    batch: built only when asked for)."""
    chains = []
    for b in range(len(contexts)):
        own = out.steps[b, : int(out.lengths[b])]
        old = prefixes[b] if prefixes is not None else None
        if old is not None and len(old.blocks) > len(own) and net.reusable and torch.equal(old.context, contexts[b]):
            own = old.blocks  # a longer chain already known: keep all of it
        else:  # a copy of its own blocks: a view would keep the whole (B, max_steps, ...) buffer alive
            own = own.clone()
        kv = [(k[b], v[b]) for k, v in context_kv] if net.cfg.hidden_from_steps else None
        chains.append(Chain(own, contexts[b], kv))
    return chains


@torch.no_grad()
def act_from_state(net: ProcedureTransformer, state: Tensor) -> Tensor:
    """Action logits (B, D, A) with the queries hosted at the state block (BC, Aux BC)."""
    _, kv = net.state_pass(state, keys_only=True)
    return net.query_pass(kv)
