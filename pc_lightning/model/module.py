"""ProcedureCloner: one LightningModule for procedure cloning and its BC baselines."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from pc_lightning.data.records import IGNORE, VARIANTS, TokenSpec
from pc_lightning.model.transformer import Generation, ProcedureTransformer, TransformerConfig


class ProcedureCloner(L.LightningModule):
    """Predicts x_0..x_L then a under teacher forcing (``pc``), or a alone (``bc``, ``aug_bc``),
    or a plus x as auxiliary targets the action cannot see (``aux_bc``).

    Args:
        variant: pc | bc | aux_bc | aug_bc (aug_bc trains like bc; its data is augmented).
        spec: token vocabularies, linked from the DataModule by the CLI.
        d_model, n_heads, n_layers, d_ff, dropout: transformer size.
        window: step blocks each block attends to, itself included (1 = Markov,
            p(x_l | x_{l-1}, s)); None = all earlier blocks.
        stem_kernel, stem_layers: convolutional token stem (locality; kernel 1 = none).
        pos_emb: "none" (size-independent) or "sincos" (absolute 2-D).
        rel_pos: 2-D ALiBi attention bias (relative, size-independent).
        state_in_steps: add the step context's embedding to each step block, cell by cell.
        steps_attend_state: step blocks attend to the context block too.
        hide_from_steps: state tokens that step blocks never see (replaced by token 0 in
            their *context*, the state as they see it), e.g. the maze's agent, whom the BFS
            flood ignores. x_0 is predicted from the context and the action query reads the
            full state. With window 1 a procedure then depends on the state only through
            its context, so rollouts reuse it from one step to the next.
        patch: cells per token, (rows, columns). (1, 1): a token per cell. Larger patches
            cut the tokens per block (MinAtar's 11 x 10 blocks: 11 tokens with (1, 10)),
            and with them the cost of every pass; losses and generated blocks stay per cell.
        bit_head: where the domain declares bit-vector step tokens (``TokenSpec.step_bits``
            = B), predict a cell as "bits or which symbol" plus B independent bits instead
            of one softmax over the 2**B vectors and the symbols. Far smaller outputs
            (MinAtar's seaquest: 36 instead of 1,049 per cell), the same likelihood-based loss.
        attn_sink: a learned key/value per layer that any query may attend to instead of content.
        query_sees_state: the action query, hosted at a step block, also reads the state block.
            False saves the state block's pass per action where the host block already shows
            the full state (``hide_from_steps``).
        lr, weight_decay, warmup_steps: AdamW, linear warm-up, then cosine decay to
            ``min_lr_ratio * lr`` at ``decay_steps`` (default: the trainer's max_steps;
            constant if neither is set). Exact procedures need a very low loss, and the
            decay is what gets there.
        action_loss_weight: weight of the action's cross-entropy against the procedure's.
        changed_token_weight: weight of a procedure token whose target differs from the
            token at the same cell of the block it is predicted from (the state for x_0,
            x_l for x_{l+1}), against 1 for a token that stays. Where most of a block is
            static background (MinAtar frames), the few cells that move carry the
            procedure; without this the mean loss is dominated by copying. Meaningful where
            the domain's state and step tokens share ids for the same content (MinAtar's
            frames do; the maze's do not, so it keeps 1).
        scheduled_sampling: in training, the probability that an input step block is
            replaced by the model's own greedy prediction of it (from a no-grad
            teacher-forced pass; only blocks that are some position's target, the state's
            x_0 included). Targets stay the expert's. Generation feeds the model its own
            imperfect blocks; teacher forcing never does (0 = off; one more forward pass).
    """

    def __init__(self, variant: str = "pc", spec: TokenSpec | dict | None = None, d_model: int = 64, n_heads: int = 4,
                 n_layers: int = 2, d_ff: int = 256, dropout: float = 0.0, window: int | None = 1,
                 stem_kernel: int = 3, stem_layers: int = 1, pos_emb: str = "none", rel_pos: bool = True,
                 state_in_steps: bool = True, steps_attend_state: bool = True,
                 hide_from_steps: list[int] | None = None, attn_sink: bool = True, query_sees_state: bool = True,
                 patch: tuple[int, int] | list[int] = (1, 1), bit_head: bool = False, lr: float = 3e-4,
                 weight_decay: float = 0.0, warmup_steps: int = 50, decay_steps: int | None = None,
                 min_lr_ratio: float = 0.02, action_loss_weight: float = 1.0,
                 changed_token_weight: float = 1.0, scheduled_sampling: float = 0.0) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"model.variant must be one of {VARIANTS}, got {variant!r}")
        if spec is None:
            raise ValueError("model.spec (token vocabularies) is required; the CLI links it from the DataModule")
        if isinstance(spec, dict):
            spec = TokenSpec(**spec)
        if not 0.0 <= scheduled_sampling <= 1.0:
            raise ValueError(f"model.scheduled_sampling must be a probability in [0, 1], got {scheduled_sampling}")
        if bit_head and not spec.step_bits:
            raise ValueError("model.bit_head needs a domain whose step tokens are bit vectors (TokenSpec.step_bits > 0)")
        self.spec = spec
        self.save_hyperparameters(ignore=["spec"])
        self.hparams["spec"] = asdict(spec)  # plain types: checkpoints load with weights_only=True
        self.variant = variant
        self.net = ProcedureTransformer(TransformerConfig(
            state_vocab=spec.state_vocab, step_vocab=spec.step_vocab, action_vocab=spec.action_vocab,
            d_model=d_model, n_heads=n_heads, n_layers=n_layers, d_ff=d_ff, dropout=dropout, window=window,
            stem_kernel=stem_kernel, stem_layers=stem_layers, pos_emb=pos_emb, rel_pos=rel_pos,
            state_in_steps=state_in_steps, steps_attend_state=steps_attend_state,
            hide_from_steps=tuple(hide_from_steps or ()), attn_sink=attn_sink, query_sees_state=query_sees_state,
            patch=tuple(patch), step_bits=spec.step_bits if bit_head else 0))

    @property
    def uses_procedure(self) -> bool:
        return self.variant in ("pc", "aux_bc")

    # ---------------------------------------------------------------- training
    def _own_predictions(self, batch: dict[str, Tensor], p: float) -> Tensor:
        """The batch's step blocks (B, K, H, W), each replaced with probability ``p`` by the
        model's greedy prediction of it, where it is a position's target: block k > 0 is
        predicted by block k-1 of its segment, block 0 by the state (where it is x_0)."""
        steps, targets = batch["steps"], batch["targets"]
        bsz, k, h, w = steps.shape
        with torch.no_grad():
            s_out, x_out, _ = self.net(batch["state"], steps, batch["step_valid"], batch["action_host"],
                                       batch.get("step_segment"), raw=True)
            first = self.net.cell_argmax(s_out).view(bsz, 1, h, w)  # the state's prediction of x_0
            nxt = self.net.cell_argmax(x_out).view(bsz, k, h, w)  # block j's prediction of block j+1
        pred = torch.cat([first, nxt[:, :-1]], 1)  # (B, K, H, W): a prediction of each block
        source_target = torch.cat([batch["first_target"][:, None], targets[:, :-1]], 1)
        is_target = (source_target == steps).flatten(2).all(-1) & batch["step_valid"]  # (B, K)
        segment = batch.get("step_segment")
        if segment is not None:  # a segment's first block is not predicted by the block before it
            is_target[:, 1:] &= segment[:, 1:] == segment[:, :-1]
            is_target[:, 0] &= segment[:, 0] == 0
        swap = is_target & (torch.rand(bsz, k, device=steps.device) < p)
        return torch.where(swap[:, :, None, None], pred, steps)

    def _losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        steps = batch["steps"] if self.uses_procedure else None
        p = self.hparams.get("scheduled_sampling", 0.0)
        if steps is not None and self.training and p > 0 and steps.shape[1] > 0:
            steps = self._own_predictions(batch, p)
        # raw head outputs: a bit head's loss needs no 2**B-way table (ProcedureTransformer.cell_nll)
        state_logits, step_logits, action_logits = self.net(
            batch["state"], steps, batch["step_valid"], batch["action_host"], batch.get("step_segment"), raw=True)
        out: dict[str, Tensor] = {}
        action_t = batch["action"]
        has_action = action_t != IGNORE
        action_loss = F.cross_entropy(action_logits, action_t, ignore_index=IGNORE, reduction="sum")
        n_actions = has_action.sum()
        out["action_loss"] = action_loss / n_actions.clamp(min=1)
        out["action_correct"] = ((action_logits.argmax(-1) == action_t) & has_action).sum()
        out["n_actions"] = n_actions
        loss = self.hparams.action_loss_weight * out["action_loss"]
        if self.uses_procedure:
            logits = [state_logits.flatten(0, 1)]  # (B*N, V)
            targets = [batch["first_target"].flatten()]
            sources = [batch["state"].flatten()]  # the token each target is predicted from, same cell
            if step_logits is not None:
                logits.append(step_logits.flatten(0, 2))
                targets.append(batch["targets"].flatten())
                sources.append(batch["steps"].flatten())
            logits_t, targets_t = torch.cat(logits), torch.cat(targets)
            known = targets_t != IGNORE
            token_loss = self.net.cell_nll(logits_t, targets_t)  # (T,), 0 where ignored
            predicted = self.net.cell_argmax(logits_t)
            weight = known.float()
            if self.spec.step_cell_weights is not None:
                cells = torch.tensor(self.spec.step_cell_weights, dtype=weight.dtype, device=weight.device).flatten()
                weight = weight * cells.repeat(len(weight) // len(cells))  # every block is H x W, in order
            if self.hparams.changed_token_weight != 1.0:
                changed = targets_t != torch.cat(sources)
                weight = weight * torch.where(changed, self.hparams.changed_token_weight, 1.0)
            out["procedure_loss"] = (token_loss * weight).sum() / weight.sum().clamp(min=1.0)
            out["procedure_correct"] = ((predicted == targets_t) & known).sum()
            out["n_procedure"] = known.sum()
            loss = loss + out["procedure_loss"]
        out["loss"] = loss
        return out

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self._losses(batch)
        bsz = batch["state"].shape[0]
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=bsz)
        self.log("train/action_loss", out["action_loss"], batch_size=bsz)
        if "procedure_loss" in out:
            self.log("train/procedure_loss", out["procedure_loss"], batch_size=bsz)
        return out["loss"]

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        out = self._losses(batch)
        bsz = batch["state"].shape[0]
        self.log(f"{stage}/loss", out["loss"], sync_dist=True, batch_size=bsz)
        n_act = int(out["n_actions"])
        if n_act:
            self.log(f"{stage}/action_acc", out["action_correct"] / n_act, sync_dist=True, batch_size=n_act)
        if "n_procedure" in out and int(out["n_procedure"]):
            n = int(out["n_procedure"])
            self.log(f"{stage}/procedure_token_acc", out["procedure_correct"] / n, sync_dist=True, batch_size=n)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        warmup = max(1, self.hparams.warmup_steps)
        total = self.hparams.decay_steps
        if total is None and self._trainer is not None and self.trainer.max_steps and self.trainer.max_steps > 0:
            total = self.trainer.max_steps
        floor = self.hparams.min_lr_ratio

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not total or total <= warmup:
                return 1.0
            progress = min(1.0, (step - warmup) / (total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, state: Tensor, stop_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
            max_procedure_steps: int = 64, prefixes: list[Tensor | None] | None = None,
            constrain_fn: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None
            ) -> tuple[Tensor, Generation | None]:
        """Greedy actions (B,) for state tokens (B, H, W), and the generated procedure (pc only).

        ``prefixes``: each state's previous procedure in its episode; ``constrain_fn``: the
        domain's edit of each generated block (both see :meth:`ProcedureTransformer.generate`)."""
        if self.variant == "pc":
            gen = self.net.generate(state, max_procedure_steps, stop_fn, prefixes, constrain_fn)
            return gen.actions, gen
        return self.net.act_from_state(state).argmax(-1), None

    def generate_procedure(self, state: Tensor, stop_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
                           max_procedure_steps: int = 64,
                           constrain_fn: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None) -> Generation:
        """Imagined procedure for each state, whatever the variant (for Aux BC it is a side output)."""
        return self.net.generate(state, max_procedure_steps, stop_fn, constrain_fn=constrain_fn)


def count_parameters(module: torch.nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["ProcedureCloner", "count_parameters"]
