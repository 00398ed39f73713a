"""``pc-lightning``: LightningCLI with fit / validate / test / predict subcommands.

    pc-lightning fit --config conf/maze.yaml
    pc-lightning test --config conf/maze.yaml --ckpt_path <run>/checkpoints/best.ckpt

The model is always :class:`~pc_lightning.model.ProcedureCloner`; the DataModule is chosen
by ``data.class_path`` (one per domain). A config may build on another with a ``config:``
key (``conf/maze_bc.yaml`` is ``conf/maze.yaml`` with another variant), and ``${...}``
interpolations are resolved after all configs and flags are merged. The model's variant, window and depth are linked
into the DataModule (they decide how examples are cut), and the DataModule's token
vocabularies into the model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jsonargparse
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from pc_lightning.data import ProcedureDataModule
from pc_lightning.model import ProcedureCloner


class ProcedureCLI(LightningCLI):
    def before_instantiate_classes(self) -> None:
        """``--ckpt_path last``: resume the newest run of this config, logging into it.

        Lightning looks for ``last`` only in the new run's own folder (a new TensorBoard
        version), so on its own it would silently start from scratch."""
        if self.subcommand is None:
            return
        cfg = self.config[self.subcommand]
        if cfg.get("ckpt_path") != "last":
            return
        logger = cfg.trainer.get("logger")
        args = getattr(logger, "init_args", None)
        if args is None or args.get("save_dir") is None:
            return  # not a TensorBoard-style logger: leave it to Lightning
        run_root = Path(args.save_dir) / (args.get("name") or "lightning_logs")
        found = sorted(run_root.glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise SystemExit(f"--ckpt_path last: no {run_root}/version_*/checkpoints/last.ckpt to resume from")
        cfg.ckpt_path = str(found[-1])
        version = found[-1].parent.parent.name.removeprefix("version_")
        args.version = int(version) if version.isdigit() else version
        print(f"Resuming from {cfg.ckpt_path}", file=sys.stderr)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("model.variant", "data.init_args.variant")
        parser.link_arguments("model.window", "data.init_args.window")
        parser.link_arguments("model.n_layers", "data.init_args.n_layers")
        parser.link_arguments("data.spec", "model.spec", apply_on="instantiate")


def build_cli(args: list[str] | None = None, run: bool = True) -> ProcedureCLI:
    """Parse ``args`` (default: the command line) and, with ``run``, run the subcommand
    (without it, ``args`` has no subcommand: the classes are only instantiated); returns the CLI."""
    jsonargparse.set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    return ProcedureCLI(
        ProcedureCloner,
        ProcedureDataModule,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf+"},
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``pc-lightning`` console script. Returns None: the script passes
    the return value to ``sys.exit``, where anything else would be a failure status."""
    build_cli(args)


if __name__ == "__main__":
    main()
