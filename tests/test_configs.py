"""Every shipped config parses into the classes it names; each domain fits in-process."""

from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY
from pc_lightning.cli import build_cli
from pc_lightning.eval import BestCheckpoint
from test_minatar import TINY_MINATAR
from test_pointmaze import TINY_POINTMAZE
from test_sweep import TINY_SWEEP

CONFIGS = sorted(p.name for p in (ROOT / "conf").glob("*.yaml") if p.name != "base.yaml")  # base: shared, not a run
VARIANT_OF = {"maze": "pc", "minatar": "pc", "sweep": "pc", "pointmaze": "pc"}  # a base config is PC; an overlay names its variant


def test_every_config_is_tested():
    assert set(CONFIGS) == {"maze.yaml", "maze_bc.yaml", "maze_aux_bc.yaml", "maze_aug_bc.yaml", "minatar.yaml",
                            "minatar_bc.yaml", "minatar_aux_bc.yaml", "sweep.yaml", "sweep_bc.yaml", "sweep_aux_bc.yaml",
                            "sweep_aug_bc.yaml", "pointmaze.yaml", "pointmaze_bc.yaml", "pointmaze_aux_bc.yaml",
                            "pointmaze_aug_bc.yaml"}


@pytest.mark.parametrize("domain", sorted(VARIANT_OF))
def test_domain_configs_stack_on_base_and_repeat_none_of_it(domain):
    """conf/base.yaml holds the trainer, logger and callbacks once; a domain's config says
    only its budget, model and data."""
    declared = yaml.safe_load((ROOT / "conf" / f"{domain}.yaml").read_text())
    assert declared["config"] == "base.yaml"
    assert "trainer" not in declared and "seed_everything" not in declared
    assert {k for k in declared if k.startswith("trainer.")} <= {"trainer.max_steps", "trainer.val_check_interval"}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_parses_and_selects_on_validation(name, tmp_path):
    cli = build_cli(["--config", f"conf/{name}", "--data.init_args.data_dir", str(tmp_path / "data"),
                     "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")], run=False)
    stem = Path(name).stem
    domain, _, variant = stem.partition("_")
    assert cli.model.variant.name == (variant or VARIANT_OF[domain])
    assert cli.datamodule.variant == cli.model.variant  # linked, not repeated
    assert type(cli.datamodule).__module__.startswith(f"pc_lightning.domains.{domain}")
    assert cli.trainer.logger.name == f"{domain}_{cli.model.variant.name}"
    monitors = [cb.resolve_monitor(cli.datamodule) if isinstance(cb, BestCheckpoint) else cb.monitor
                 for cb in cli.trainer.checkpoint_callbacks]
    monitors = [m for m in monitors if m]
    assert monitors == [f"val_envs/{cli.datamodule.selection_metric}"], monitors
    assert not (tmp_path / "data").exists(), "parsing a config generates no data"


GAME_OVERLAYS = sorted(p.name for p in (ROOT / "conf" / "minatar").glob("*.yaml"))


@pytest.mark.parametrize("variant", ["minatar", "minatar_bc", "minatar_aux_bc"])
@pytest.mark.parametrize("overlay", GAME_OVERLAYS)
def test_game_overlay_applies_to_every_variant(variant, overlay, tmp_path):
    """conf/minatar/<game>.yaml on top of any MinAtar variant: that game, the variant kept, and
    the same model and budget whichever the variant."""
    cli = build_cli(["--config", f"conf/{variant}.yaml", "--config", f"conf/minatar/{overlay}",
                     "--data.init_args.data_dir", str(tmp_path / "data"),
                     "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")], run=False)
    declared = yaml.safe_load((ROOT / "conf" / "minatar" / overlay).read_text())
    assert cli.datamodule.game == declared["data.init_args.game"]
    assert cli.datamodule.procedure == declared.get("data.init_args.procedure", "search")
    assert cli.model.variant.name == (variant.partition("_")[2] or "pc")
    base = build_cli(["--config", "conf/minatar.yaml", "--config", f"conf/minatar/{overlay}",
                      "--data.init_args.data_dir", str(tmp_path / "data"),
                      "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")], run=False)
    assert cli.trainer.max_steps == base.trainer.max_steps
    assert {k: v for k, v in cli.model.hparams.items() if k != "variant"} == \
        {k: v for k, v in base.model.hparams.items() if k != "variant"}


@pytest.mark.parametrize("config,tiny", [("maze", TINY), ("minatar", TINY_MINATAR), ("sweep", TINY_SWEEP),
                                         ("pointmaze", TINY_POINTMAZE)])
def test_fast_dev_run_in_process(config, tiny, tmp_path):
    """Lightning's fast_dev_run: two training and two validation batches, then the rollout
    suites, with no logger or checkpoint; the domain's data is generated on the way."""
    cli = build_cli(["fit", "--config", f"conf/{config}.yaml", *tiny, "--trainer.fast_dev_run", "2",
                     "--data.init_args.data_dir", str(tmp_path / "data")])
    assert cli.trainer.state.finished and cli.trainer.global_step == 2
    logged = cli.trainer.callback_metrics
    assert {"train/loss", "val_envs/episodes_per_s", "heldout/episodes_per_s"} <= set(logged)
    assert list((tmp_path / "data").glob(f"{config}-train-*.pt"))
