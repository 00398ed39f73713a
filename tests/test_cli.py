"""Tiny end-to-end runs of the real command line, one subprocess each."""

import re
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY

METRICS = ["val_envs/success_rate", "heldout/success_rate", "heldout/path_ratio", "train_envs/success_rate",
           "train/loss", "val/loss", "val/action_acc"]


def scalars(run_dir: Path) -> dict[str, list[float]]:
    acc = EventAccumulator(str(run_dir)).Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def images(run_dir: Path) -> list[str]:
    return EventAccumulator(str(run_dir)).Reload().Tags()["images"]


@pytest.mark.parametrize("config", ["maze", "maze_bc", "maze_aux_bc", "maze_aug_bc"])
def test_fit_every_variant(cli, tmp_path, config):
    proc = cli(["fit", "--config", f"conf/{config}.yaml", *TINY])
    assert proc.returncode == 0
    run_dir = next((tmp_path / "runs").glob("*/version_0"))
    values = scalars(run_dir)
    for name in METRICS:
        assert name in values, f"{name} not logged; got {sorted(values)}"
    assert len(values["heldout/success_rate"]) == 2  # evaluated at steps 2 and 4
    ckpts = {p.name for p in run_dir.glob("checkpoints/*.ckpt")}
    assert ckpts == {"last.ckpt", "best.ckpt"}
    said = proc.stdout + proc.stderr  # where everything went, at the end
    assert f"checkpoint (chosen on val_envs/" in said and "best.ckpt" in said and "logs (tensorboard --logdir" in said
    # best.ckpt is chosen on the validation mazes, never on the held-out ones
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=False, map_location="cpu")
    (selector,) = [v for k, v in state["callbacks"].items() if k.startswith("ModelCheckpoint") and v["monitor"]]
    assert selector["monitor"] == "val_envs/success_rate"
    assert float(selector["best_model_score"]) == max(values["val_envs/success_rate"])
    assert values["hp_metric"] == [pytest.approx(float(selector["best_model_score"]))]  # not -1
    if config in ("maze", "maze_aux_bc"):
        assert "heldout/procedure_acc" in values
        assert any("procedure" in tag for tag in images(run_dir))
        acc = EventAccumulator(str(run_dir)).Reload()
        image_steps = [e.step for e in acc.Images("heldout/procedure_expert_top_model_bottom")]
        assert image_steps == [e.step for e in acc.Scalars("heldout/success_rate")], "images beside their scalars"
    assert list((tmp_path / "data").glob("maze-train-*.pt"))


def test_resume_last_and_test_a_checkpoint(cli, tmp_path):
    assert cli(["fit", "--config", "conf/maze.yaml", *TINY]).returncode == 0
    run_dir = tmp_path / "runs" / "maze_pc" / "version_0"
    resumed = cli(["fit", "--config", "conf/maze.yaml", *TINY, "--trainer.max_steps", "6", "--ckpt_path", "last"])
    assert resumed.returncode == 0
    assert "Restored all states from the checkpoint" in resumed.stderr + resumed.stdout
    assert not (tmp_path / "runs" / "maze_pc" / "version_1").exists(), "a resumed run logs into its own run"
    steps = [e for e in scalars(run_dir)["heldout/success_rate"]]
    assert len(steps) == 3, "evaluated at steps 2 and 4, then once more at 6 after resuming"
    tested = cli(["test", "--config", "conf/maze.yaml", *TINY, "--data.init_args.heldout_size", "10",
                  "--ckpt_path", str(run_dir / "checkpoints" / "best.ckpt")], env={"PYTHONWARNINGS": "default"})
    assert tested.returncode == 0
    assert "heldout" in tested.stdout and "success_rate" in tested.stdout
    # test results go beside the checkpoint's run, in their own TensorBoard run; no new run folder
    assert sorted(p.name for p in (tmp_path / "runs" / "maze_pc").iterdir()) == ["version_0"]
    assert "heldout/success_rate" in scalars(run_dir / "test" / "version_0")
    console = tested.stdout + tested.stderr  # with warnings on: what a user sees
    assert "dirpath has changed" not in console
    assert "💡 Tip" not in console and "LeafSpec" not in console, "Lightning's adverts and its own deprecation"


def test_resume_last_without_a_run_is_explained(cli):
    proc = cli(["fit", "--config", "conf/maze.yaml", *TINY, "--ckpt_path", "last"])
    assert proc.returncode != 0
    assert "--ckpt_path last: no " in proc.stderr and "last.ckpt to resume from" in proc.stderr


def test_a_wrong_key_is_named(cli):
    proc = cli(["fit", "--config", "conf/maze.yaml", "--model.d_modle", "8"])
    assert proc.returncode != 0
    assert "d_modle" in proc.stderr


def test_a_wrong_type_is_named(cli):
    proc = cli(["fit", "--config", "conf/maze.yaml", "--data.init_args.size", "sixteen"])
    assert proc.returncode != 0
    assert "size" in proc.stderr


def test_a_bad_maze_size_is_explained(cli):
    proc = cli(["fit", "--config", "conf/maze.yaml", *TINY, "--data.init_args.size", "12"])
    assert proc.returncode != 0
    assert "3k+1" in proc.stderr


def test_ddp_two_processes_on_cpu(cli, tmp_path):
    proc = cli(["fit", "--config", "conf/maze.yaml", *TINY, "--trainer.devices", "2", "--trainer.strategy", "ddp"],
               env={"PYTHONWARNINGS": "default"})
    assert proc.returncode == 0
    values = scalars(next((tmp_path / "runs").glob("*/version_0")))
    assert len(values["heldout/success_rate"]) == 2
    # the evaluation's numbers are already means over the ranks: no advice to sync them
    assert "heldout/success_rate', ..., sync_dist=True" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_fits_and_evaluates(cli, tmp_path, precision):
    """The GPU path's precisions run on the CPU too (16-mixed falls back to bf16 there): the
    teacher-forced step, the greedy generation of the evaluation and the checkpoint."""
    proc = cli(["fit", "--config", "conf/maze.yaml", *TINY, "--trainer.precision", precision])
    assert proc.returncode == 0
    assert "bfloat16 Automatic Mixed Precision" in proc.stdout + proc.stderr
    values = scalars(next((tmp_path / "runs").glob("*/version_0")))
    assert len(values["heldout/success_rate"]) == 2 and all(v == v for v in values["train/loss"])


def test_an_unknown_variant_is_named_at_its_key(cli):
    proc = cli(["fit", "--config", "conf/maze.yaml", "--model.variant", "foo"])
    assert proc.returncode != 0
    assert 'key "model.variant"' in proc.stderr and "data.variant" not in proc.stderr
    assert "Namespace(" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_misspelled_key_suggests_the_near_one(cli):
    proc = cli(["fit", "--config", "conf/maze.yaml", "--model.n_layer", "3"])  # not taken as an abbreviation
    assert proc.returncode != 0
    assert "--model.n_layer -> did you mean --model.n_layers?" in proc.stderr


def _fake_checkpoint(path, spec, variant="pc", **hparams):
    from pc_lightning.model import ProcedureCloner

    model = ProcedureCloner(variant, spec, **hparams)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)


@pytest.mark.parametrize("case", ["missing", "random_bytes", "other_domain", "other_variant"])
def test_a_bad_checkpoint_is_named_before_any_data(cli, tmp_path, case):
    from pc_lightning.domains.maze import MazeDataModule

    ckpt = tmp_path / "model.ckpt"
    config = "conf/maze.yaml"
    if case == "random_bytes":
        ckpt.write_bytes(bytes(range(256)) * 40)
    elif case == "other_domain":  # a maze checkpoint under a MinAtar config
        _fake_checkpoint(ckpt, MazeDataModule().spec, d_model=32, n_heads=2, d_ff=128)
        config = "conf/minatar.yaml"
    elif case == "other_variant":
        _fake_checkpoint(ckpt, MazeDataModule().spec, "bc", d_model=32, n_heads=2, d_ff=128, stem_layers=2)
    proc = cli(["test", "--config", config, "--ckpt_path", str(ckpt)])
    assert proc.returncode != 0
    assert f"--ckpt_path {ckpt}: " in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "UnicodeDecodeError" not in proc.stderr
    want = {"missing": "no such file", "random_bytes": "not a checkpoint", "other_domain": "token spec differs",
            "other_variant": "a 'bc' checkpoint, but model.variant is 'pc'"}[case]
    assert want in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists(), "checked before anything is made"


def test_top_level_help_names_study_and_summary(capsys):
    """``study`` and ``summary`` are not Lightning subcommands: ``pc-lightning --help`` says they exist."""
    from pc_lightning.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "pc-lightning study --config" in out and "pc-lightning summary RUN" in out and "{fit,validate,test,predict}" in out
