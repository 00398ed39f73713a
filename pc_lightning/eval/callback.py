"""HeldOutEvaluation: rollouts on environments never trained on, during fit and in test."""

from __future__ import annotations

import time

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import MeanMetric

from pc_lightning.eval.rollout import PolicyWithMemory, procedure_accuracy, run_episodes


class HeldOutEvaluation(Callback):
    """After each validation (every ``trainer.val_check_interval`` steps) and in ``test``,
    run batched rollouts of the current policy on every suite the DataModule offers
    (``heldout``, ``train_envs``, ...) and log ``{suite}/{stat}`` (success_rate, return,
    path_ratio, ...), ``{suite}/procedure_acc`` and images of expert vs generated procedure.

    Each rank runs its share of the episodes; torchmetrics averages across ranks, so the
    numbers are those of the whole suite under DDP too.

    Args:
        every_n_validations: evaluate on every n-th validation run only.
        n_probes: states per suite whose generated procedure is compared with the expert's.
        log_images: log the expert-vs-generated image of the first probe (rank 0), and, for
            suites that can ``animate(module)`` an episode, that episode as an animated GIF.
        animate_suite: the suite whose episode is animated.
    """

    def __init__(self, every_n_validations: int = 1, n_probes: int = 16, log_images: bool = True,
                 animate_suite: str = "heldout") -> None:
        self.every_n_validations = every_n_validations
        self.animate_suite = animate_suite
        self.n_probes = n_probes
        self.log_images = log_images
        self._validations = 0

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._validations += 1
        if self._validations % self.every_n_validations == 0:
            self.evaluate(trainer, pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.evaluate(trainer, pl_module)

    @torch.no_grad()
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "eval_suites"):
            raise RuntimeError("HeldOutEvaluation needs a DataModule with eval_suites()")
        was_training = pl_module.training
        pl_module.eval()
        rank, world = trainer.global_rank, trainer.world_size
        results: dict[str, float] = {}
        for name, suite in datamodule.eval_suites().items():
            start = time.perf_counter()
            episodes = suite.episodes(rank, world)
            n_episodes = len(episodes.done)

            constrain = getattr(suite, "constrain_fn", None)
            policy = PolicyWithMemory(pl_module, n_episodes, suite.stop_fn, suite.max_procedure_steps,
                                      constrain_fn=constrain)
            stats = run_episodes(episodes, policy, pl_module.device)
            for stat, values in stats.items():
                results[f"{name}/{stat}"] = self._mean(values, pl_module)
            seconds = time.perf_counter() - start
            results[f"{name}/episodes_per_s"] = self._mean(np.array([n_episodes / max(seconds, 1e-9)]), pl_module)
            if pl_module.uses_procedure and self.n_probes > 0:
                states, expert = suite.probes(rank, world)
                states, expert = states[: self.n_probes], expert[: self.n_probes]
                gen = pl_module.generate_procedure(torch.from_numpy(states).long().to(pl_module.device),
                                                   suite.stop_fn, suite.max_procedure_steps, constrain)
                accuracy = getattr(suite, "procedure_accuracy", procedure_accuracy)
                results[f"{name}/procedure_acc"] = self._mean(accuracy(expert, gen.steps, gen.lengths), pl_module)
                if hasattr(suite, "procedure_metrics"):  # a domain's further procedure metrics
                    for key, values in suite.procedure_metrics(expert, gen.steps, gen.lengths).items():
                        results[f"{name}/{key}"] = self._mean(values, pl_module)
                if self.log_images and rank == 0 and len(states):
                    self._log_image(trainer, f"{name}/procedure_expert_top_model_bottom",
                                    suite.render(states[0], expert[0], gen.steps[0, : int(gen.lengths[0])].cpu().numpy()))
            if self.log_images and rank == 0 and name == self.animate_suite and hasattr(suite, "animate"):
                self._log_gif(trainer, f"{name}/episode_real_left_imagined_right", suite.animate(pl_module))
        for key, value in results.items():
            pl_module.log(key, value, rank_zero_only=False, sync_dist=False)
        rank_zero_info("  ".join(f"{k}={v:.3f}" for k, v in sorted(results.items())))
        if was_training:
            pl_module.train()
        return results

    @staticmethod
    def _mean(values: np.ndarray, pl_module: L.LightningModule) -> float:
        """Mean over all ranks' values (NaN if there are none anywhere)."""
        metric = MeanMetric(nan_strategy="ignore").to(pl_module.device)
        # update even with no values: every rank must take part in compute()'s all-gather
        metric.update(torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float32,
                                      device=pl_module.device))
        value = metric.compute()
        return float(value)

    def _log_image(self, trainer: L.Trainer, tag: str, image: torch.Tensor) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(tag, image, global_step=trainer.global_step)

    def _log_gif(self, trainer: L.Trainer, tag: str, frames: np.ndarray, fps: int = 8) -> None:
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
                logger.experiment._get_file_writer().add_summary(summary, global_step=trainer.global_step)
