"""HeldOutEvaluation: rollouts on environments never trained on, during fit and in test."""

from __future__ import annotations

import json
import re
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import MeanMetric

from pc_lightning.data.datamodule import ProcedureDataModule
from pc_lightning.eval.rollout import PolicyWithMemory, run_episodes
from pc_lightning.lightning_compat import logged_step

#: the suite whose first episode is logged as a GIF, where the suite animates one
ANIMATED_SUITE = "heldout"


class HeldOutEvaluation(Callback):
    """After each validation (every ``trainer.val_check_interval`` steps) and in ``test``,
    run batched rollouts of the current policy on every suite the DataModule offers
    (``val_envs`` for checkpoint selection, ``heldout`` for the report, ``train_envs``, ...)
    and log ``{suite}/{stat}`` (success_rate, return, path_ratio, ...),
    ``{suite}/procedure_acc`` and images of expert vs generated procedure. The suites are
    the DataModule's :meth:`~pc_lightning.data.ProcedureDataModule.selected_suites` (all,
    unless ``data.init_args.suites`` names some). During fit it also logs ``time/train_s``,
    the seconds spent training so far with every validation excluded (kept across a
    resume), so that a curve can be read against training time.

    With ``fit_suites``, the validations during fit run only those suites (``val_envs``,
    the one checkpoints are chosen on: a weak model's episodes run to the step limit, and
    the test suites are the costly part), and at the end of the fit the checkpoint chosen
    by the first monitoring ``ModelCheckpoint`` is evaluated on the other suites. Those
    numbers are logged at the x of the validation that chose it (so they sit on the curves
    where it was chosen) and written with its path, step and score to
    ``<log_dir>/selected.json``.

    Each rank runs its share of the episodes; torchmetrics averages across ranks, so the
    numbers are those of the whole suite under DDP too.

    Args:
        fit_suites: the suites evaluated at each validation during fit (None: the domain's
            :attr:`~pc_lightning.data.ProcedureDataModule.fit_suites`, where None means every suite).
        n_probes: states per suite whose generated procedure is compared with the expert's
            (None: the domain's :attr:`~pc_lightning.data.ProcedureDataModule.n_probes`).
        max_batch: the most episodes one policy call steps. It bounds the memory of a
            rollout (the generation's attention and KV caches grow with the episodes
            stepped together: 100 mazes of 31x31 at once took 3 GB) and does not change
            the results; None steps all of a rank's episodes together.
    """

    def __init__(self, n_probes: int | None = None, max_batch: int | None = 32,
                 fit_suites: list[str] | None = None) -> None:
        # as configured (None: the domain's, read in setup) and as used
        self._fit_suites_arg = None if fit_suites is None else [str(n) for n in fit_suites]
        self._n_probes_arg = n_probes
        self.fit_suites, self.n_probes = self._fit_suites_arg, n_probes
        self.max_batch = max_batch
        self._silenced: set[str] = set()
        self._train_s = 0.0  # training seconds before the running clock started
        self._clock: float | None = None  # perf_counter() when training last resumed, None while validating

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Check ``data.init_args.suites`` and, for a fit, ``fit_suites`` before any training
        (each error names its key)."""
        datamodule = trainer.datamodule
        if isinstance(datamodule, ProcedureDataModule):  # what the config leaves out, the domain declares
            self.fit_suites = self._fit_suites_arg
            if self.fit_suites is None and datamodule.fit_suites is not None:
                self.fit_suites = list(datamodule.fit_suites)
            self.n_probes = datamodule.n_probes if self._n_probes_arg is None else self._n_probes_arg
        if isinstance(datamodule, ProcedureDataModule) and datamodule.suites is not None:
            datamodule.selected_suites()
        if isinstance(datamodule, ProcedureDataModule) and self.fit_suites is not None and stage == "fit":
            known = datamodule.selected_suites()
            unknown = [n for n in self.fit_suites if n not in known]
            if unknown:
                raise ValueError(f"HeldOutEvaluation fit_suites: {unknown} not among the suites evaluated "
                                 f"({sorted(known)}; data.init_args.suites selects them)")

    # ---------------------------------------------------------------- training time
    def train_seconds(self) -> float:
        """Seconds spent training in this fit (and the runs it resumed), validations excluded."""
        return self._train_s + (0.0 if self._clock is None else time.perf_counter() - self._clock)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._clock = time.perf_counter()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._train_s, self._clock = self.train_seconds(), None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._clock = time.perf_counter()

    def state_dict(self) -> dict[str, float]:
        return {"train_s": self.train_seconds()}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self._train_s = float(state_dict.get("train_s", 0.0))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.evaluate(trainer, pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.evaluate(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Say where the logs and checkpoints went, and log the selected checkpoint's
        validation score as TensorBoard's ``hp_metric`` (the configs turn off its -1 default)."""
        chooser = self._chooser(trainer)
        lines = []
        if trainer.log_dir:
            lines.append(f"logs (tensorboard --logdir {trainer.log_dir}): {trainer.log_dir}")
        for cb in trainer.checkpoint_callbacks:
            path = getattr(cb, "best_model_path", "") or getattr(cb, "last_model_path", "")
            if path:
                score = cb.best_model_score if getattr(cb, "monitor", None) else None
                what = f"chosen on {cb.monitor} = {float(score):.3f}" if score is not None else "the newest"
                lines.append(f"checkpoint ({what}): {path}")
        if chooser is not None and chooser.best_model_score is not None:
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.log_hyperparams(dict(pl_module.hparams),
                                           {"hp_metric": float(chooser.best_model_score)})
        if lines:
            rank_zero_info("\n".join(lines))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """With ``fit_suites``: the selected checkpoint on the suites the fit left out."""
        if self.fit_suites is not None:
            self.evaluate_selected(trainer, pl_module)

    @staticmethod
    def _chooser(trainer: L.Trainer):
        """The first ``ModelCheckpoint`` with a ``monitor``: the one whose best checkpoint is
        "the chosen one" (None where no checkpoint callback monitors anything)."""
        return next((cb for cb in trainer.checkpoint_callbacks if getattr(cb, "monitor", None)), None)

    def _suites(self, trainer: L.Trainer) -> dict:
        datamodule = trainer.datamodule
        if not isinstance(datamodule, ProcedureDataModule):
            raise RuntimeError("HeldOutEvaluation needs a ProcedureDataModule (a domain's DataModule with eval_suites())")
        return datamodule.selected_suites()

    @torch.no_grad()
    def evaluate_selected(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float] | None:
        """Evaluate the checkpoint chosen by the first monitoring ``ModelCheckpoint`` on every
        suite not in ``fit_suites`` (where none was chosen, e.g. ``fast_dev_run``: the module
        as it is); log the numbers at the x of the validation that chose it, put them in
        ``trainer.callback_metrics``, write them with its path, step and score to
        ``<log_dir>/selected.json`` and print them. The module's own weights are put back
        afterwards. Returns the results (None: no suite left to run)."""
        chooser = self._chooser(trainer)
        path = chooser.best_model_path if chooser is not None else ""
        rest = {n: s for n, s in self._suites(trainer).items() if n not in (self.fit_suites or [])}
        if not rest:
            return None
        step = trainer.global_step
        own = None
        if path:
            ckpt = torch.load(path, map_location=pl_module.device, weights_only=True)
            step = int(ckpt.get("global_step", step))
            own = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            pl_module.load_state_dict(ckpt["state_dict"])
        # Lightning logged the validation that chose it at the batches that had stepped
        # then, one less than the checkpoint's global step: the numbers go on that x
        at = max(step - 1, 0)
        try:
            results = self.measure(trainer, pl_module, rest, image_step=at)
        finally:
            if own is not None:
                pl_module.load_state_dict(own)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in results.items()})
        monitor = chooser.monitor if path else None
        score = chooser.best_model_score if path else None
        log_dir = trainer.log_dir  # a broadcast under DDP: every rank asks
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(results, step=at)
                logger.save()
            if log_dir:
                summary = {"checkpoint": str(path) if path else None, "step": step, "monitor": monitor,
                           "score": None if score is None else float(score), "results": results}
                (Path(log_dir) / "selected.json").write_text(json.dumps(summary, indent=1) + "\n")
        what = f"the checkpoint chosen on {monitor}" if path else "no checkpoint chosen: the last weights"
        rank_zero_info(f"{what} (step {step}):\n" + self.table(step, results).split("\n", 1)[1])
        return results

    @torch.no_grad()
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Evaluate the current module on this stage's suites (``fit_suites`` during fit)
        and log the numbers through the module (Lightning's step)."""
        suites = self._suites(trainer)
        if trainer.state.fn == "fit" and self.fit_suites is not None:
            suites = {n: s for n, s in suites.items() if n in self.fit_suites}
        results = self.measure(trainer, pl_module, suites, image_step=self._step(trainer))
        for key, value in results.items():
            # already the mean over all ranks (torchmetrics): Lightning's advice to sync it
            # under DDP is a false alarm for these keys, silenced for them alone
            if key not in self._silenced:
                warnings.filterwarnings("ignore", message=re.escape(f"It is recommended to use `self.log({key!r}, ..."))
                self._silenced.add(key)
            pl_module.log(key, value, rank_zero_only=False, sync_dist=False)
        if trainer.state.fn == "fit":  # rank 0's clock: the ranks train in lockstep
            warnings.filterwarnings("ignore", message=re.escape("It is recommended to use `self.log('time/train_s', ..."))
            pl_module.log("time/train_s", self.train_seconds(), rank_zero_only=True)
        rank_zero_info(self.table(trainer.global_step, results))
        return results

    @torch.no_grad()
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule, suites: dict,
                image_step: int) -> dict[str, float]:
        """Roll out ``suites`` (name -> EvalSuite) with the module and compare its procedures
        with the expert's; returns ``{suite}/{stat}`` means over all ranks. Images and the GIF
        are logged at ``image_step``; nothing else is logged."""
        was_training = pl_module.training
        pl_module.eval()
        rank, world = trainer.global_rank, trainer.world_size
        results: dict[str, float] = {}
        for name, suite in suites.items():
            start = time.perf_counter()
            episodes = suite.episodes(rank, world)
            n_episodes = len(episodes.done)
            policy = PolicyWithMemory(pl_module, n_episodes, suite.stop_fn, suite.max_procedure_steps)
            stats = run_episodes(episodes, policy, pl_module.device, max_batch=self.max_batch)
            for stat, values in stats.items():
                results[f"{name}/{stat}"] = self._mean(values, pl_module)
            seconds = time.perf_counter() - start
            results[f"{name}/episodes_per_s"] = self._mean(np.array([n_episodes / max(seconds, 1e-9)]), pl_module)
            if pl_module.uses_procedure and (self.n_probes or 0) > 0:
                states, expert = suite.probes(rank, world)
                states, expert = states[: self.n_probes], expert[: self.n_probes]
                steps, lengths = self._generate(pl_module, states, suite)
                results[f"{name}/procedure_acc"] = self._mean(
                    suite.procedure_accuracy(expert, steps, lengths), pl_module)
                for key, values in suite.procedure_metrics(states, expert, steps, lengths).items():
                    results[f"{name}/{key}"] = self._mean(values, pl_module)
                if rank == 0 and len(states):
                    self._log_image(trainer, f"{name}/procedure_expert_top_model_bottom",
                                    suite.render(states[0], expert[0], steps[0, : int(lengths[0])].cpu().numpy()),
                                    image_step)
            if rank == 0 and name == ANIMATED_SUITE:
                frames = suite.animate(pl_module)
                if frames is not None:
                    self._log_gif(trainer, f"{name}/{suite.animation_tag}", frames, image_step)
        if was_training:
            pl_module.train()
        return results

    def _generate(self, pl_module, states: np.ndarray, suite) -> tuple[torch.Tensor, torch.Tensor]:
        """The probes' generated procedures, ``max_batch`` states at a time: steps (P, Lmax,
        Hx, Wx), -1 past each one's length, and lengths (P,)."""
        if len(states) == 0:  # this rank has no probe (fewer configurations than ranks)
            h, w = pl_module.net.step_shape(torch.as_tensor(states))
            return (torch.full((0, 1, h, w), -1, dtype=torch.long, device=pl_module.device),
                    torch.zeros(0, dtype=torch.long, device=pl_module.device))
        size = len(states) if self.max_batch is None else max(1, self.max_batch)
        parts = [pl_module.generate_procedure(torch.from_numpy(states[lo : lo + size]).long().to(pl_module.device),
                                              suite.stop_fn, suite.max_procedure_steps)
                 for lo in range(0, len(states), size)]
        if len(parts) == 1:
            return parts[0].steps, parts[0].lengths
        longest = max(p.steps.shape[1] for p in parts)
        steps = torch.cat([torch.nn.functional.pad(p.steps, (0, 0, 0, 0, 0, longest - p.steps.shape[1]), value=-1)
                           for p in parts])
        return steps, torch.cat([p.lengths for p in parts])

    @staticmethod
    def table(step: int, results: dict[str, float]) -> str:
        """The results as a short table, one row per suite, one column per statistic."""
        suites = sorted({k.split("/", 1)[0] for k in results})
        stats = sorted({k.split("/", 1)[1] for k in results})
        width = max(len(s) for s in suites)
        lines = [f"evaluation at step {step}:", " " * width + "".join(f"  {s:>{max(len(s), 7)}}" for s in stats)]
        for suite in suites:
            cells = []
            for s in stats:
                v = results.get(f"{suite}/{s}")
                cells.append(f"  {'-' if v is None else f'{v:.3f}':>{max(len(s), 7)}}")
            lines.append(f"{suite:<{width}}" + "".join(cells))
        return "\n".join(lines)

    @staticmethod
    def _mean(values: np.ndarray, pl_module: L.LightningModule) -> float:
        """Mean over all ranks' values (NaN if there are none anywhere)."""
        metric = MeanMetric(nan_strategy="ignore").to(pl_module.device)
        # update even with no values: every rank must take part in compute()'s all-gather
        metric.update(torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float32,
                                      device=pl_module.device))
        value = metric.compute()
        return float(value)

    @staticmethod
    def _step(trainer: L.Trainer) -> int:
        """The step Lightning logs this evaluation's scalars at, so that images and GIFs sit beside them."""
        return logged_step(trainer)

    def _log_image(self, trainer: L.Trainer, tag: str, image: torch.Tensor, step: int) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(tag, image, global_step=step)

    def _log_gif(self, trainer: L.Trainer, tag: str, frames: np.ndarray, step: int, fps: int = 8) -> None:
        """Frames (T, H, W, 3) uint8 as an animated GIF in TensorBoard's image tab (which plays it)."""
        if len(frames) == 0:
            return
        import io

        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary

        images = [Image.fromarray(f) for f in frames]
        buf = io.BytesIO()
        images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)
        t, h, w, _ = frames.shape
        summary = Summary(value=[Summary.Value(tag=tag, image=Summary.Image(
            height=h, width=w, colorspace=3, encoded_image_string=buf.getvalue()))])
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.file_writer.add_summary(summary, global_step=step)
