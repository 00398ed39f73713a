"""Expert jobs in worker processes, results in job order, with a progress bar."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from tqdm.auto import tqdm


def _call(item: tuple[Callable[..., Any], int, dict[str, Any]]) -> tuple[int, Any]:
    fn, i, job = item
    return i, fn(**job)


def run_jobs(fn: Callable[..., Any], jobs: Sequence[dict[str, Any]], workers: int, desc: str, unit: str = "job",
             postfix: Callable[[Any], dict[str, Any]] | None = None) -> list[Any]:
    """``[fn(**job) for job in jobs]`` (each job its keyword arguments), in ``workers`` spawned
    processes when ``workers > 1``.

    Results come back in job order whatever order the jobs finish in; the bar advances as
    each one finishes and shows ``postfix(result)`` if given. ``fn`` must be picklable (a
    module-level function, or a ``functools.partial`` of one)."""
    out: list[Any] = [None] * len(jobs)
    with tqdm(total=len(jobs), desc=desc, unit=unit) as bar:

        def done(i: int, result: Any) -> None:
            out[i] = result
            if postfix is not None:
                bar.set_postfix(**postfix(result))
            bar.update()

        if workers > 1 and len(jobs) > 1:
            from multiprocessing import get_context

            with get_context("spawn").Pool(min(workers, len(jobs))) as pool:
                for i, result in pool.imap_unordered(_call, [(fn, i, job) for i, job in enumerate(jobs)]):
                    done(i, result)
        else:
            for i, job in enumerate(jobs):
                done(i, fn(**job))
    return out
