"""Expert records (s, x_0..x_L, a) and the teacher-forcing examples cut from them.

Every variant reads the same records; they differ only in which blocks an example holds
and which block hosts the action query:

    pc      [s | x_0 .. x_L ]   action read at x_L
    aux_bc  [s | x_0 .. x_L ]   action read at s (the steps are auxiliary targets it cannot see)
    bc      [s]                 action read at s
    aug_bc  bc on randomly transformed states (the domain supplies the transform)

Every procedure is served as [START, x_0 .. x_L]: a start block (all ``start_token``)
whose output predicts x_0.

A long procedure is cut into chunks of ``chunk_blocks`` input blocks. With attention
window w a block's output depends on at most (w-1)*n_layers earlier blocks, so each
chunk carries that many context blocks (inputs without targets) and every prediction
equals the one of the full sequence. So that every example trains the action, a pc
chunk that does not reach x_L carries the tail of the procedure (x_L and its context)
as a separate attention segment.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pc_lightning.spec import IGNORE, Variant, variant as get_variant

# (state, steps, action: an id, or the (D,) ids of an action block, rng) -> the same, transformed
Augment = Callable[[np.ndarray, np.ndarray, "int | np.ndarray", np.random.Generator],
                   tuple[np.ndarray, np.ndarray, "int | np.ndarray"]]


def _token_dtype(tokens: np.ndarray) -> type:
    """The smallest integer type that holds these token ids (uint8, else int16, else int32)."""
    top, low = int(tokens.max(initial=0)), int(tokens.min(initial=0))
    if low < 0:
        raise ValueError(f"token ids must be >= 0, got {low}")
    return np.uint8 if top < 256 else np.int16 if top < 2**15 else np.int32


@dataclass
class ProcedureRecords:
    """M expert states with their procedures, stored flat.

    states (M, Hs, Ws) and steps (S, Hx, Wx) of the smallest integer type that holds the
    tokens, record i's x_0..x_L being steps[offsets[i]:offsets[i+1]]; actions (M,) int64
    (one token each) or (M, D) (an action block of D tokens); groups (M,) int64, the
    environment (e.g. maze) each state came from; meta: plain numbers and strings about
    the data (e.g. the expert's mean return), saved with it.
    """

    states: Tensor
    steps: Tensor
    offsets: Tensor
    actions: Tensor
    groups: Tensor
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.states)

    def procedure(self, i: int) -> Tensor:
        return self.steps[self.offsets[i] : self.offsets[i + 1]]

    @classmethod
    def from_lists(cls, states: list[np.ndarray], procedures: list[np.ndarray],
                   actions: list[int] | list[list[int]],
                   groups: list[int], meta: dict | None = None) -> "ProcedureRecords":
        if not states:
            raise ValueError("no expert records to store")
        lengths = torch.tensor([len(p) for p in procedures], dtype=torch.long)
        states_a, steps_a = np.stack(states), np.concatenate(procedures)
        return cls(
            states=torch.from_numpy(states_a.astype(_token_dtype(states_a))),
            steps=torch.from_numpy(steps_a.astype(_token_dtype(steps_a))),
            offsets=torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]),
            actions=torch.tensor(actions, dtype=torch.long),
            groups=torch.tensor(groups, dtype=torch.long),
            meta=dict(meta or {}),
        )

    @classmethod
    def concat(cls, parts: "list[dict[str, Any]]", meta: dict | None = None) -> "ProcedureRecords":
        """Records of expert jobs' results, in order: each a dict with lists ``states``,
        ``procedures``, ``actions`` and ``groups`` (one entry per decision; other keys ignored)."""
        keys = ("states", "procedures", "actions", "groups")
        return cls.from_lists(*([x for p in parts for x in p[k]] for k in keys), meta=meta)

    def save(self, path: str | Path) -> None:
        """Write atomically: a temporary file in the same folder, then a rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            torch.save(self.__dict__, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def load(cls, path: str | Path) -> "ProcedureRecords":
        return cls(**torch.load(path, weights_only=True))


class ProcedureDataset(Dataset):
    """Teacher-forcing examples for one variant, cut from :class:`ProcedureRecords`."""

    def __init__(self, records: ProcedureRecords, variant: str | Variant, chunk_blocks: int = 4,
                 context_blocks: int = 0, augment: Augment | None = None, *, start_token: int) -> None:
        variant = get_variant(variant, "variant")
        if chunk_blocks < 1:
            raise ValueError(f"chunk_blocks must be >= 1, got {chunk_blocks}")
        self.records = records
        self.variant = variant
        self.chunk_blocks = chunk_blocks
        self.context_blocks = context_blocks
        self.augment = augment
        self.start_token = start_token  # procedures are served as [START, x_0 .. x_L]
        lengths = (records.offsets[1:] - records.offsets[:-1] + 1).tolist()
        if not variant.uses_procedure:
            self.items = [(i, 0) for i in range(len(records))]
        else:
            self.items = [(i, j) for i, n in enumerate(lengths) for j in range(0, n, chunk_blocks)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int | tuple[int, int]) -> dict[str, Tensor]:
        """Example ``idx``; or (idx, seed): with that seed for its augmentation (the
        training loader's, so that a resumed run augments as the uninterrupted one)."""
        seed = None
        if isinstance(idx, tuple):
            idx, seed = idx
        i, j = self.items[idx]
        state = self.records.states[i].numpy()
        steps = self.records.procedure(i).numpy()
        action = self.records.actions[i]  # () or (D,)
        if self.augment is not None:
            rng = np.random.default_rng(int(torch.randint(2**62, (1,))) if seed is None else seed)
            action = int(action) if action.ndim == 0 else action.numpy()
            state, steps, action = self.augment(state, steps, action, rng)
        action = torch.as_tensor(action, dtype=torch.long)
        state_t = torch.from_numpy(np.asarray(state)).long()
        if not self.variant.uses_procedure:
            hx, wx = self.records.steps.shape[1:]
            return {"state": state_t, "steps": torch.zeros(0, hx, wx, dtype=torch.long),
                    "targets": torch.zeros(0, hx, wx, dtype=torch.long),
                    "segment": torch.zeros(0, dtype=torch.long), "action": action, "action_host": torch.tensor(-1)}
        steps_t = torch.from_numpy(np.asarray(steps)).long()  # (L+1, Hx, Wx)
        steps_t = torch.cat([torch.full_like(steps_t[:1], self.start_token), steps_t])  # [START, x_0 .. x_L]
        last = len(steps_t) - 1
        lo, hi = max(0, j - self.context_blocks), min(last, j + self.chunk_blocks - 1)
        inputs = steps_t[lo : hi + 1]
        targets = torch.full_like(inputs, IGNORE)
        own = slice(j - lo, hi - lo)  # blocks j..hi-1 predict j+1..hi
        targets[own] = steps_t[j + 1 : hi + 1]
        if hi < last:
            targets[hi - lo] = steps_t[hi + 1]
        segment = torch.zeros(len(inputs), dtype=torch.long)
        if self.variant.query_at_steps and hi < last:
            # Every example trains the action: append the procedure's tail (x_L and the
            # context it depends on) as a second segment, which the chunk cannot see.
            tail = steps_t[max(0, last - self.context_blocks) :]
            inputs = torch.cat([inputs, tail])
            targets = torch.cat([targets, torch.full_like(tail, IGNORE)])
            segment = torch.cat([segment, torch.ones(len(tail), dtype=torch.long)])
        host = len(inputs) - 1 if self.variant.query_at_steps else -1  # else the state block
        return {"state": state_t, "steps": inputs, "targets": targets,
                "segment": segment, "action": action, "action_host": torch.tensor(host)}


def collate(examples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack examples, padding step blocks to the longest (padding: step_valid False)."""
    k = max(len(e["steps"]) for e in examples)
    h, w = examples[0]["steps"].shape[1:]
    bsz = len(examples)
    steps = torch.zeros(bsz, k, h, w, dtype=torch.long)
    targets = torch.full((bsz, k, h, w), IGNORE, dtype=torch.long)
    valid = torch.zeros(bsz, k, dtype=torch.bool)
    segment = torch.zeros(bsz, k, dtype=torch.long)
    for b, e in enumerate(examples):
        n = len(e["steps"])
        steps[b, :n] = e["steps"]
        segment[b, :n] = e["segment"]
        segment[b, n:] = e["segment"][-1] if n else 0
        targets[b, :n] = e["targets"]
        valid[b, :n] = True
    return {
        "state": torch.stack([e["state"] for e in examples]),  # (B, Hs, Ws)
        "steps": steps,  # (B, K, Hx, Wx)
        "step_valid": valid,  # (B, K)
        "step_segment": segment,  # (B, K)
        "targets": targets,  # (B, K, Hx, Wx)
        "action": torch.stack([e["action"] for e in examples]),  # (B,) or (B, D)
        "action_host": torch.stack([e["action_host"] for e in examples]),  # (B,)
    }
