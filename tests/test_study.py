"""pc-lightning study (issue 13): a tiny grid end to end, the aggregation against a
hand-computed IQM, and a study killed mid-way that completes without redoing a cell."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, TINY
from pc_lightning.logs import last_scalar
from pc_lightning.study import Cell, Study, aggregate, iqm
from pc_lightning.study.runner import cli_command


def study_config(tmp_path: Path, seeds: list[int], variants: dict[str, str]) -> Path:
    overrides = TINY + ["--data.init_args.data_dir", str(tmp_path / "data")]
    conf = {"name": "tiny", "variants": variants, "seeds": seeds, "metric": "heldout/success_rate", "expert": 1.0,
            "x": {"key": "data.init_args.n_train", "label": "training mazes", "values": [1, 2]},
            "overrides": overrides, "threads": 1, "out": str(tmp_path / "study"),
            "fit": ["--data.init_args.suites", "[val_envs]"], "test": ["--data.init_args.suites", "[heldout]"],
            "time_to": {"variant": "pc", "x": 1, "threshold": 0.0}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def study(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([*cli_command(), "study", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)


def _tags(run: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_iqm_and_its_interval_on_fixed_numbers():
    runs = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0]  # middle half: 0.4, 0.6, 0.8, 1.0
    assert iqm(np.array(runs)) == pytest.approx(0.7)
    results = [{"variant": "pc", "x": 5, "seed": s, "heldout": v} for s, v in enumerate(runs)]
    results += [{"variant": "bc", "x": 5, "seed": s, "heldout": 0.25} for s in range(4)]
    agg = aggregate(results, "heldout", reps=500)
    pc, bc = agg["pc"][5], agg["bc"][5]
    assert pc["iqm"] == pytest.approx(0.7) and pc["n"] == 8
    assert 0.0 <= pc["low"] <= 0.7 <= pc["high"] <= 1.0 and pc["high"] - pc["low"] > 0.1
    assert bc["iqm"] == bc["low"] == bc["high"] == pytest.approx(0.25)  # no spread, no interval
    assert aggregate(results, "heldout", reps=500) == agg, "the bootstrap is seeded"


def test_the_quick_grid_is_the_config_s_small_one():
    s = Study.load(ROOT / "conf/study/maze.yaml", quick=True)
    assert s.x_values == [1, 5] and list(s.variants) == ["pc", "bc"] and s.seeds == [0, 1] and not s.extra_tests
    full = Study.load(ROOT / "conf/study/maze.yaml")
    assert s.out != full.out, "a quick run must not replace the full grid's cells of the same name"
    assert len(full.cells()) == 4 * 5 * len(full.seeds) and len(full.seeds) >= 5
    assert "zero_shot_31x31" in full.extra_tests
    # the zero-shot test runs on PC's 5-maze cells alone, and is part of their definition
    assert sorted(c.name for c in full.cells() if c.extras) == [f"pc-x5-s{s}" for s in full.seeds]
    pc5 = next(c for c in full.cells() if c.extras)
    assert pc5.digest != Cell(pc5.variant, pc5.x, pc5.seed, pc5.args, pc5.config_files, pc5.fit_args,
                              pc5.test_args).digest
    results = [{"variant": "pc", "x": 5, "seed": 0, "heldout": 1.0, "zero_shot_31x31": 0.9},
               {"variant": "bc", "x": 5, "seed": 0, "heldout": 0.1}]
    assert aggregate(results, "zero_shot_31x31", reps=10) == {
        "pc": {5: {"iqm": 0.9, "low": 0.9, "high": 0.9, "n": 1}}, "bc": {}}


def test_the_sweep_study_reads_the_shift_from_its_own_metric():
    s = Study.load(ROOT / "conf/study/sweep.yaml")
    assert s.metric == "heldout/fraction_in_bowls" and s.select == "val_envs/fraction_in_bowls"
    assert s.extra_metric == {"heldout_shift": "heldout_shift/fraction_in_bowls"}
    assert all(c.extras == {"heldout_shift": ["--data.init_args.suites", "[heldout_shift]"]} for c in s.cells())
    assert len(s.cells()) == 4 * 4 * 3
    quick = Study.load(ROOT / "conf/study/sweep.yaml", quick=True)
    assert len(quick.cells()) == 4 and "200" in quick.overrides


def test_the_minatar_study_selects_on_validation_returns_and_tests_the_shift():
    s = Study.load(ROOT / "conf/study/minatar.yaml")
    assert s.metric == "heldout/return" and s.select == "val_envs/return"
    assert s.extra_metric == {"heldout_shift": "heldout_shift/return"}
    assert len(s.cells()) == 3 * 2 * 3 and all(c.extras for c in s.cells())
    assert all("--data.init_args.game" in c.args for c in s.cells())
    assert len(Study.load(ROOT / "conf/study/minatar.yaml", quick=True).cells()) == 2


def test_the_pointmaze_study_is_the_maze_s_figure_on_layouts():
    s = Study.load(ROOT / "conf/study/pointmaze.yaml")
    assert s.metric == "heldout/success_rate" and s.x_key == "data.init_args.n_train"
    assert len(s.cells()) == 4 * 5 * 3
    assert sorted(c.name for c in s.cells() if c.extras) == [f"pc-x5-s{k}" for k in s.seeds]
    assert len(Study.load(ROOT / "conf/study/pointmaze.yaml", quick=True).cells()) == 4


def test_the_figure_ticks_the_grid_s_own_x_values():
    pytest.importorskip("rliable")
    import matplotlib.pyplot as plt

    from pc_lightning.study.report import figure

    for values in ([1, 2], [1, 2, 5, 10, 20]):
        s = Study.load(ROOT / "conf/study/maze.yaml")
        s.x_values = values
        results = [{"variant": v, "x": x, "seed": k, "heldout": 0.5 + 0.1 * k} for v in ("pc", "bc")
                   for x in values for k in range(3)]
        fig = figure(s, results)
        assert list(fig.axes[0].get_xticks()) == values
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [str(x) for x in values]
        plt.close(fig)


def test_the_headline_study_is_the_readme_table_and_runs_a_variant_alone():
    s = Study.load(ROOT / "conf/study/maze_headline.yaml")
    assert s.overrides == [] and s.x_values == [5] and s.seeds == [0, 1, 2]
    cells = s.cells()
    assert len(cells) == 4 * 3 and sorted(c.name for c in cells if c.extras) == ["pc-x5-s0", "pc-x5-s1", "pc-x5-s2"]
    # the cells read conf/base.yaml too: a change there is a change of every cell
    assert all(ROOT / "conf/base.yaml" in [f.resolve() for f in c.config_files] for c in cells)
    digests = {c.name: c.digest for c in cells}
    s.only_variants(["pc"])
    assert [c.name for c in s.cells()] == ["pc-x5-s0", "pc-x5-s1", "pc-x5-s2"]
    assert all(c.digest == digests[c.name] for c in s.cells()), "the same cells, whichever variants run"
    with pytest.raises(SystemExit, match="--variants ppc: not in the study"):
        s.only_variants(["ppc"])


def test_the_flight_study_stacks_its_overlay_and_hashes_it(tmp_path):
    s = Study.load(ROOT / "conf/study/minatar_flight.yaml")
    assert s.metric == "heldout/return_frac_expert"
    assert s.extra_metric == {"heldout_shift": "heldout_shift/return_frac_expert"}
    cells = s.cells()
    assert len(cells) == 3 * 2 * 3 and all(c.extras for c in cells)
    overlay = ROOT / "conf/minatar/breakout_flight.yaml"
    assert all(overlay in [f.resolve() for f in c.config_files] for c in cells)
    # an edit of the stacked overlay changes every cell's digest (a finished cell is recomputed)
    copy = tmp_path / "breakout_flight.yaml"
    copy.write_text(overlay.read_text())
    s.overrides[s.overrides.index("--config") + 1] = str(copy)
    before = [c.digest for c in s.cells()]
    copy.write_text(overlay.read_text() + "trainer.max_steps: 10\n")
    assert all(a != b for a, b in zip(before, (c.digest for c in s.cells())))
    assert len(Study.load(ROOT / "conf/study/minatar_flight.yaml", quick=True).cells()) == 2


@pytest.mark.slow
def test_a_tiny_study_killed_mid_way_completes_without_redoing_a_cell(tmp_path):
    """Two cells of a tiny grid, one at a time: kill -9 while the second runs, rerun the same
    command; the first is not computed again, and the table and the figure are written."""
    conf = study_config(tmp_path, [0], {"pc": "conf/maze.yaml"})
    cells = tmp_path / "study" / "cells"
    proc = study(["--config", str(conf), "--workers", "1"])
    deadline = time.time() + 600
    while time.time() < deadline and not list(cells.glob("*/result.json")) and proc.poll() is None:
        time.sleep(0.5)
    assert list(cells.glob("*/result.json")), "the first cell finished"
    time.sleep(3)  # the second cell is under way
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9, the study and its fits
    proc.wait()
    before = {p.parent.name: p.stat().st_mtime_ns for p in cells.glob("*/result.json")}
    assert len(before) == 1
    again = study(["--config", str(conf), "--workers", "1"])
    out, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out[-3000:]
    assert "1 already done" in out
    after = {p.parent.name: p.stat().st_mtime_ns for p in cells.glob("*/result.json")}
    assert sorted(after) == ["pc-x1-s0", "pc-x2-s0"]
    assert all(after[name] == t for name, t in before.items()), "a finished cell was computed again"
    for name in after:
        r = json.loads((cells / name / "result.json").read_text())
        run = cells / name / "run" / "version_0"
        assert r["variant"] == "pc"
        assert r["heldout"] == last_scalar(run / "test" / "version_0", "heldout/success_rate"), "the test's number"
        assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "test" / "version_0").is_dir()
        # the fit evaluated val_envs alone, every 2 steps, with its training time; the test held-out alone
        assert [step for step, _, _ in r["curve"]] == [1, 3]
        assert 0.0 < r["curve"][0][1] < r["curve"][1][1]
        assert "val_envs/success_rate" in _tags(run) and "heldout/success_rate" not in _tags(run)
        assert _tags(run / "test" / "version_0") >= {"heldout/success_rate"}
        assert not any(t.startswith(("val_envs/", "train_envs/")) for t in _tags(run / "test" / "version_0"))
    table = (tmp_path / "study" / "study_tiny.md").read_text()
    assert "## Training time to val_envs/success_rate >= 0.0 (pc, x = 1)" in table
    assert "| 0 | 1 |" in table, "threshold 0 is reached at the first evaluation"
    assert "| pc |" in table and "x = 1" in table and "x = 2" in table and "rliable" in table
    assert (tmp_path / "study" / "study_tiny.png").stat().st_size > 1000
    assert (tmp_path / "study" / "study_tiny.svg").is_file()


@pytest.mark.slow
def test_a_tiny_study_on_a_local_ray_instance(tmp_path):
    """--engine ray: the cell runs as a Ray task (on a local instance here, as on a cluster's
    nodes), records its result like a pooled cell, and a rerun finds it done."""
    pytest.importorskip("ray")
    conf = study_config(tmp_path, [0], {"bc": "conf/maze_bc.yaml"})
    raw = yaml.safe_load(conf.read_text())
    raw["x"]["values"] = [1]
    raw["memory_gb"] = 1
    conf.write_text(yaml.safe_dump(raw))
    proc = study(["--config", str(conf), "--engine", "ray"])
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "Ray (a local instance), 1 CPU(s) per cell" in out and "done bc-x1-s0" in out
    r = json.loads((tmp_path / "study" / "cells" / "bc-x1-s0" / "result.json").read_text())
    assert r["variant"] == "bc"
    tested = tmp_path / "study" / "cells" / "bc-x1-s0" / "run" / "version_0" / "test" / "version_0"
    assert r["heldout"] == last_scalar(tested, "heldout/success_rate"), "the test's number"
    again = study(["--config", str(conf), "--engine", "ray"])
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0 and "1 already done" in out, out[-3000:]


def test_summary_reads_each_run_at_its_chosen_step(tmp_path):
    """pc-lightning summary: the value logged at each run's best.ckpt step (one less, as
    Lightning logs a validation), or its selected.json; a mean and t-interval over the runs."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from pc_lightning.summary import table

    runs = []
    for seed, (step, val, held) in enumerate([(250, 0.5, 0.4), (500, 0.7, 0.6), (500, 0.9, 0.8)]):
        run = tmp_path / "sweep_pc" / f"s{seed}"
        (run / "checkpoints").mkdir(parents=True)
        torch.save({"global_step": step}, run / "checkpoints" / "best.ckpt")
        writer = SummaryWriter(str(run))
        for at in (249, 499):  # the chosen step's value, and a later or earlier one that is not
            writer.add_scalar("val_envs/score", val if at == step - 1 else 0.0, at)
        writer.close()
        if seed == 2:  # the held-out number of the chosen checkpoint, recorded at the end of its fit
            (run / "selected.json").write_text(json.dumps({"step": step, "results": {"heldout/score": held}}))
        else:
            writer = SummaryWriter(str(run))
            writer.add_scalar("heldout/score", held, step - 1)
            writer.close()
        runs.append(run)
    out = table(runs, ["val_envs/score", "heldout/score"]).splitlines()
    half = 4.303 * 0.2 / 3 ** 0.5  # t(0.975, 2) * sd / sqrt(3), sd of (0.5, 0.7, 0.9) = 0.2
    assert out[2] == (f"| sweep_pc | 3 | 250, 500, 500 | 0.700 ± {half:.3f} (0.500, 0.700, 0.900) | "
                      f"0.600 ± {half:.3f} (0.400, 0.600, 0.800) |")
    with pytest.raises(SystemExit, match="no 'heldout/other' logged"):
        table(runs, ["heldout/other"])


def test_the_t_interval_has_the_t_factor_beyond_the_table():
    """12 runs: t(0.975, 11) = 2.201 (a normal quantile's 1.96 would be 11% narrow); the
    table's values agree with scipy's where both exist."""
    from pc_lightning.summary import T_975, interval, t_975

    assert t_975(12) == pytest.approx(2.201, abs=1e-3)
    assert all(t_975(n) == pytest.approx(t, abs=1e-3) for n, t in T_975.items())
    values = [0.0, 1.0] * 6  # sd sqrt(12/11) / 2
    mean, half = interval(values)
    assert mean == 0.5 and half == pytest.approx(2.201 * (12 / 11) ** 0.5 / 2 / 12 ** 0.5, abs=1e-3)
