"""ProcedureCloner: one LightningModule for procedure cloning and its BC baselines."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict

import lightning as L
import torch
from torch import Tensor, nn

from pc_lightning.model.generate import Chain, Generation, StopFn, act_from_state, generate
from pc_lightning.model.transformer import ProcedureTransformer, TransformerConfig
from pc_lightning.spec import IGNORE, TokenSpec, VariantName, variant as get_variant


class ProcedureCloner(L.LightningModule):
    """Predicts x_0..x_L then a under teacher forcing (``pc``), or a alone (``bc``, ``aug_bc``),
    or a plus x as auxiliary targets the action cannot see (``aux_bc``).

    Args:
        variant: pc | bc | aux_bc | aug_bc (aug_bc trains like bc; its data is augmented).
        spec: the domain's token spec, linked from the DataModule by the CLI.
        d_model, n_heads, n_layers, d_ff, dropout: transformer size.
        window: step blocks each block attends to, itself included (1 = Markov,
            p(x_l | x_{l-1}, s)); None = all earlier blocks.
        stem_kernel, stem_layers: convolutional token stem (locality; kernel 1 = none).
        patch: cells per token, (rows, columns). (1, 1): a token per cell. Larger patches
            cut the tokens per block (MinAtar's 11 x 10 blocks: 11 tokens with (1, 10)),
            and with them the cost of every pass; losses and generated blocks stay per cell.
        bit_head: where the domain declares bit-vector step tokens (``TokenSpec.step_bits``
            = B), predict a cell as "bits or which symbol" plus B independent bits instead
            of one softmax over the 2**B vectors and the symbols. Far smaller outputs
            (MinAtar's seaquest: 36 instead of 1,049 per cell), the same likelihood-based loss.
        lr, weight_decay, warmup_steps: AdamW, linear warm-up, then cosine decay to
            ``min_lr_ratio * lr`` at ``decay_steps`` (default: the trainer's max_steps;
            constant if neither is set). Exact procedures need a very low loss, and the
            decay is what gets there.
        changed_token_weight: weight of a procedure token whose target differs from the
            token at the same cell of the block it is predicted from (the state for x_0, which
            the start block predicts; x_l for x_{l+1}), against 1 for a token that stays. Where most of a block is
            static background (MinAtar frames), the few cells that move carry the
            procedure; without this the mean loss is dominated by copying. Meaningful where
            the domain's state and step tokens share ids for the same content (MinAtar's
            frames do; the maze's do not, so it keeps 1).
    """

    def __init__(self, variant: VariantName = "pc", spec: TokenSpec | dict | None = None, d_model: int = 64,
                 n_heads: int = 4,
                 n_layers: int = 2, d_ff: int = 256, dropout: float = 0.0, window: int | None = 1,
                 stem_kernel: int = 3, stem_layers: int = 1, patch: tuple[int, int] | list[int] = (1, 1),
                 bit_head: bool = False, lr: float = 3e-4, weight_decay: float = 0.0, warmup_steps: int = 50,
                 decay_steps: int | None = None, min_lr_ratio: float = 0.02,
                 changed_token_weight: float = 1.0) -> None:
        super().__init__()
        self.variant = get_variant(variant, "model.variant")
        if spec is None:
            raise ValueError("model.spec (the domain's token spec) is required; the CLI links it from the DataModule")
        if isinstance(spec, dict):
            spec = TokenSpec(**spec)
        if bit_head and not spec.step_bits:
            raise ValueError("model.bit_head needs a domain whose step tokens are bit vectors (TokenSpec.step_bits > 0)")
        self.spec = spec
        self.save_hyperparameters(ignore=["spec"])
        self.hparams["spec"] = asdict(spec)  # plain types: checkpoints load with weights_only=True
        self.net = ProcedureTransformer(TransformerConfig.from_spec(
            spec, bit_head, d_model=d_model, n_heads=n_heads, n_layers=n_layers, d_ff=d_ff, dropout=dropout,
            window=window, stem_kernel=stem_kernel, stem_layers=stem_layers, patch=tuple(patch)))
        self._cell_weights: Tensor | None = None

    @property
    def attached(self) -> bool:
        """Whether a Trainer runs this module (``self.trainer`` raises where none does)."""
        try:
            return self.trainer is not None
        except RuntimeError:
            return False

    @property
    def uses_procedure(self) -> bool:
        return self.variant.uses_procedure

    # ---------------------------------------------------------------- training
    def _token_weights(self, targets: Tensor, sources: Callable[[], Tensor]) -> Tensor:
        """Loss weight of each target token (T,): 0 where ignored, else the domain's cell
        weight (every block is Hx x Wx, in order) times ``changed_token_weight`` where the
        target differs from its source token (``sources()``, built only where needed)."""
        weight = (targets != IGNORE).float()
        if self.spec.step_cell_weights is not None:
            if self._cell_weights is None or self._cell_weights.device != weight.device:
                self._cell_weights = torch.tensor(self.spec.step_cell_weights, device=weight.device).flatten()
            cells = self._cell_weights
            weight = weight * cells.repeat(len(weight) // len(cells))
        if self.hparams.changed_token_weight != 1.0:
            changed = targets != sources()
            weight = weight * torch.where(changed, self.hparams.changed_token_weight, 1.0)
        return weight

    def _step_sources(self, batch: dict[str, Tensor]) -> Tensor:
        """The token each step block's target is predicted from, at the same cell (B*K*Hx*Wx,):
        the block's own token, and for a start block the state's cell there (-1: none)."""
        steps = batch["steps"]
        start = self.net.cfg.start_token
        h, w = steps.shape[-2:]
        cells = self.net.context_cells(batch["state"], h, w)  # (B, Hx, Wx), state_vocab where none
        cells = cells.masked_fill(cells == self.spec.state_vocab, -1)[:, None].expand_as(steps)
        return torch.where(steps == start, cells, steps).flatten()

    @staticmethod
    def _token_loss(cells: nn.Module, outputs: Tensor, targets: Tensor, weight: Tensor | None = None
                    ) -> tuple[Tensor, Tensor, Tensor]:
        """The one loss of procedure cells and action tokens: the (weighted) mean -log p of the
        targets (T,) under a cell head's raw outputs (T, c), the targets predicted right
        (greedy), and the number that have a target (not IGNORE)."""
        known = targets != IGNORE
        weight = known.float() if weight is None else weight
        loss = (cells.nll(outputs, targets) * weight).sum() / weight.sum().clamp(min=1.0)
        return loss, ((cells.argmax(outputs) == targets) & known).sum(), known.sum()

    def _losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        steps = batch["steps"] if self.uses_procedure else None
        # raw head outputs: a bit head's loss needs no 2**B-way table (BitCells.nll)
        step_out, action_out = self.net(
            batch["state"], steps, batch["step_valid"], batch["action_host"], batch.get("step_segment"), raw=True)
        out: dict[str, Tensor] = {}
        # an action is D tokens (D = 1: one token), each a cell over its bins
        action_t = batch["action"].reshape(len(action_out), -1).flatten()  # (B*D,)
        out["action_loss"], out["action_correct"], out["n_actions"] = self._token_loss(
            self.net.action_cells, action_out.flatten(0, 1), action_t)
        loss = out["action_loss"]
        if self.uses_procedure:
            targets = batch["targets"].flatten()  # (T,)
            weight = self._token_weights(targets, lambda: self._step_sources(batch))
            out["procedure_loss"], out["procedure_correct"], out["n_procedure"] = self._token_loss(
                self.net.cells, step_out.flatten(0, 2), targets, weight)
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
        trainer = self.trainer if self.attached else None
        if total is None and trainer is not None and trainer.max_steps and trainer.max_steps > 0:
            total = trainer.max_steps
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
    def act(self, state: Tensor, stop_fn: StopFn | None = None, max_procedure_steps: int = 64,
            prefixes: list[Chain | None] | None = None) -> tuple[Tensor, Generation | None]:
        """Greedy actions for state tokens (B, Hs, Ws), and the generated procedure (pc only).

        Actions are (B,) where the domain's action is one token, (B, D) where it is a block
        of D tokens (``TokenSpec.action_vocab`` a list; the domain maps bins to values).
        ``prefixes``: each state's previous procedure in its episode (see :func:`.generate.generate`)."""
        gen = None
        if self.variant.query_at_steps:
            gen = generate(self.net, state, max_procedure_steps, stop_fn, prefixes)
            actions = gen.actions
        else:
            actions = act_from_state(self.net, state).argmax(-1)  # (B, D)
        return (actions if self.spec.action_block else actions[:, 0]), gen

    def generate_procedure(self, state: Tensor, stop_fn: StopFn | None = None,
                           max_procedure_steps: int = 64) -> Generation:
        """Imagined procedure for each state, whatever the variant (for Aux BC it is a side output)."""
        return generate(self.net, state, max_procedure_steps, stop_fn)
