"""Reading scalars back from a TensorBoard run folder (studies, summaries)."""

from __future__ import annotations

from pathlib import Path


def scalars(run_dir: Path, tag: str | list[str]) -> list[tuple[int, float]] | dict[str, list[tuple[int, float]]]:
    """Every (step, value) of ``tag`` in a TensorBoard folder; for a list of tags, a dict of
    them from one read of the folder. RuntimeError naming a tag that was not logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    logged = set(acc.Tags()["scalars"])
    out = {}
    for t in [tag] if isinstance(tag, str) else tag:
        if t not in logged:
            raise RuntimeError(f"{run_dir}: no {t!r} logged")
        out[t] = [(int(e.step), float(e.value)) for e in acc.Scalars(t)]
    return out[tag] if isinstance(tag, str) else out


def last_scalar(run_dir: Path, tag: str) -> float:
    """The last value of ``tag`` in a TensorBoard folder."""
    return scalars(run_dir, tag)[-1][1]
