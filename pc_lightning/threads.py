"""Torch's intra-op thread count on a shared CPU, chosen by measuring training steps.

Torch starts one intra-op thread per core. On a machine where another process keeps a core
busy, those threads wait on each other at every barrier: a 60-step maze fit on 2 cores took
2.6x its time alone with 2 threads beside ``python3 -c "while True: pass"``, and 1.03x with
one (``bench/threads_busy.py`` measures it). Which count is fastest depends on
what else runs, and that changes during a fit, so :class:`CPUThreads` measures it: every
``every_s`` seconds of training it times a few steps at the neighbouring counts and keeps the
fastest (hill climbing, one thread at a time). ``OMP_NUM_THREADS`` set in the environment
switches it off (that count is then kept, as torch keeps it).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class ThreadTuner:
    """Hill climbing over the thread count from measured step times (no Lightning in it).

    Call :meth:`step_done` with each training step's seconds. After ``warmup_steps`` steps,
    and then every ``every_s`` seconds of steps, it probes: the last ``probe_steps`` steps
    measured the current count; each neighbour (one fewer, one more, within
    ``1..max_threads``) runs one settling step and ``probe_steps`` measured ones; the count
    with the lowest median step time is kept, the current one unless another is faster by
    more than ``tolerance``.
    """

    def __init__(self, max_threads: int, set_threads: Callable[[int], None] = torch.set_num_threads,
                 every_s: float = 30.0, probe_steps: int = 5, warmup_steps: int = 3,
                 tolerance: float = 0.05) -> None:
        if max_threads < 1 or probe_steps < 1:
            raise ValueError(f"max_threads and probe_steps must be >= 1, got {max_threads}, {probe_steps}")
        self.max_threads = max_threads
        self.set_threads = set_threads
        self.every_s, self.probe_steps, self.tolerance = every_s, probe_steps, tolerance
        self.current = max_threads
        self.recent: list[float] = []        # the current count's latest step seconds
        self.until_probe = 0.0               # seconds of steps before the next probe
        self.warmup_left = warmup_steps
        self.queue: list[int] = []           # counts still to probe
        self.probing: int | None = None      # the count being probed
        self.settle = False                  # the probed count's first step is not measured
        self.times: dict[int, list[float]] = {}
        self.probes = 0                      # probes finished

    def step_done(self, seconds: float) -> None:
        """Record one training step's duration; may change the thread count."""
        if self.probing is not None:
            if self.settle:
                self.settle = False
            else:
                self.times[self.probing].append(seconds)
                if len(self.times[self.probing]) == self.probe_steps:
                    self._next_probe()
            return
        self.recent = (self.recent + [seconds])[-self.probe_steps:]
        if self.warmup_left > 0:
            self.warmup_left -= 1
            if self.warmup_left == 0:
                self.recent = []  # warm-up steps do not measure the current count
            return
        self.until_probe -= seconds
        if self.until_probe <= 0 and len(self.recent) == self.probe_steps:
            self.times = {self.current: list(self.recent)}
            self.queue = [n for n in (self.current - 1, self.current + 1) if 1 <= n <= self.max_threads]
            self._next_probe()

    def _next_probe(self) -> None:
        if self.queue:
            self.probing = self.queue.pop(0)
            self.times[self.probing], self.settle = [], True
            self.set_threads(self.probing)
            return
        medians = {n: statistics.median(t) for n, t in self.times.items()}
        best = min(medians, key=medians.get)
        if medians[best] * (1 + self.tolerance) < medians[self.current]:
            self.current = best
        self.set_threads(self.current)
        self.probing, self.recent, self.until_probe = None, [], self.every_s
        self.probes += 1


class CPUThreads(Callback):
    """Keeps torch's intra-op thread count at the fastest one for what else runs on the
    machine (:class:`ThreadTuner`), on the CPU accelerator, in one process. Off when
    ``OMP_NUM_THREADS`` is set, on other accelerators, and in multi-process runs (each rank
    then gets ``cores // ranks``, as Lightning sets). Logs the count as ``threads``.

    Args:
        every_s: seconds of training steps between probes.
        probe_steps: measured steps per probed count.
        max_threads: the most threads to use (None: torch's count at the start of the fit,
            one per core unless set otherwise).
    """

    def __init__(self, every_s: float = 30.0, probe_steps: int = 5, max_threads: int | None = None) -> None:
        self.every_s, self.probe_steps, self.max_threads = every_s, probe_steps, max_threads
        self.tuner: ThreadTuner | None = None
        self._t0: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.tuner = None
        if os.environ.get("OMP_NUM_THREADS") or trainer.world_size > 1 or pl_module.device.type != "cpu":
            return
        top = self.max_threads or torch.get_num_threads()
        self.tuner = ThreadTuner(max(1, top), every_s=self.every_s, probe_steps=self.probe_steps)
        self.tuner.set_threads(self.tuner.current)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self.tuner is not None:
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if self.tuner is None or self._t0 is None:
            return
        self.tuner.step_done(time.perf_counter() - self._t0)
        self._t0 = None
        pl_module.log("threads", float(torch.get_num_threads()), on_step=True, on_epoch=False)

