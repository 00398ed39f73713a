"""The thread tuner: it follows a simulated machine's fastest thread count as load comes and
goes, and stays off where the user or the launcher chose the count."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from pc_lightning.threads import CPUThreads, ThreadTuner


class Machine:
    """Step seconds as a function of the thread count and of how many cores another process
    keeps busy (2 cores: two threads beside a busy core run 2.6x slower than alone, one
    thread 1.03x, as measured on this project's 2-core machine)."""

    def __init__(self) -> None:
        self.threads = 2
        self.busy = 0
        self.calls: list[int] = []

    def set(self, n: int) -> None:
        self.threads = n
        self.calls.append(n)

    def step(self) -> float:
        alone = {1: 0.52, 2: 0.38}[self.threads]
        return alone * ({1: 1.03, 2: 2.6}[self.threads] if self.busy else 1.0)


def run(tuner: ThreadTuner, machine: Machine, steps: int) -> list[int]:
    counts = []
    for _ in range(steps):
        counts.append(machine.threads)
        tuner.step_done(machine.step())
    return counts


def test_tuner_keeps_all_cores_on_a_quiet_machine_and_drops_one_beside_a_busy_core():
    machine = Machine()
    tuner = ThreadTuner(2, set_threads=machine.set, every_s=10.0, probe_steps=3, warmup_steps=2)
    run(tuner, machine, 60)
    assert tuner.probes >= 2 and tuner.current == 2 and machine.threads == 2
    assert 1 in machine.calls  # it did try one thread
    machine.busy = 1
    counts = run(tuner, machine, 200)
    assert tuner.current == 1 and machine.threads == 1
    assert counts[-100:].count(1) > 80  # probing two threads again costs a few steps per probe
    machine.busy = 0  # the other process ends: back to two
    run(tuner, machine, 100)
    assert tuner.current == 2 and machine.threads == 2


def test_tuner_time_beside_a_busy_core_is_within_2x_of_alone():
    """The issue's bar on the simulated machine: 300 steps beside a busy core take at most
    2x their time alone (fixed 2 threads: 2.6x)."""
    def total(busy: int) -> float:
        machine = Machine()
        machine.busy = busy
        tuner = ThreadTuner(2, set_threads=machine.set, every_s=30.0, probe_steps=5)
        seconds = 0.0
        for _ in range(300):
            dt = machine.step()
            seconds += dt
            tuner.step_done(dt)
        return seconds

    assert total(1) / total(0) < 2.0


def test_tuner_without_warmup_probes_as_soon_as_it_has_measured_the_current_count():
    machine = Machine()
    tuner = ThreadTuner(2, set_threads=machine.set, every_s=1e9, probe_steps=2, warmup_steps=0)
    run(tuner, machine, 2 + 1 + 2)  # 2 measured at the current count, 1 settling and 2 measured at one thread
    assert machine.calls == [1, 2] and tuner.probes == 1


def test_tuner_stays_within_one_to_max_threads():
    calls: list[int] = []
    tuner = ThreadTuner(1, set_threads=calls.append, every_s=0.0, probe_steps=2, warmup_steps=0)
    for _ in range(20):
        tuner.step_done(0.1)
    assert set(calls) <= {1} and tuner.current == 1
    with pytest.raises(ValueError, match="max_threads"):
        ThreadTuner(0)


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(64, 4))
        return torch.utils.data.DataLoader(data, batch_size=4)


def _fit(callback: CPUThreads, steps: int = 12) -> None:
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, callbacks=[callback], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_Tiny())


def test_callback_tunes_in_a_fit_and_respects_omp_num_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        callback = CPUThreads(every_s=0.0, probe_steps=2, max_threads=2)
        _fit(callback)
        assert callback.tuner is not None and callback.tuner.probes >= 1
        assert 1 <= torch.get_num_threads() <= 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        off = CPUThreads(every_s=0.0, probe_steps=2, max_threads=2)
        _fit(off)
        assert off.tuner is None and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)

