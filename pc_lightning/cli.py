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

import argparse
import difflib
import importlib
import logging
import re
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import jsonargparse
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from pc_lightning.data import ProcedureDataModule
from pc_lightning.errors import ConfigError, config_error_line
from pc_lightning.lightning_compat import set_purge_step
from pc_lightning.model import ProcedureCloner
from pc_lightning.spec import TokenSpec


def _read_checkpoint(path: str) -> object:
    """The checkpoint at ``path``, memory-mapped so that its tensors are not read (only its
    hyperparameters are checked; Lightning loads it afterwards); a file torch cannot map
    (not zip-based) is read whole."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        return torch.load(path, map_location="cpu", weights_only=True)


class ProcedureParser(LightningArgumentParser):
    """LightningCLI's parser, whose "unrecognized arguments" error names the nearest known
    option (``--model.n_layer`` -> ``--model.n_layers``)."""

    def error(self, message: str, ex: Exception | None = None):
        unknown = re.findall(r"(--[\w.]+)", message) if "unrecognized arguments" in message else []
        options = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        hints = [f"{u} -> did you mean {near[0]}?" for u in unknown
                 for near in [difflib.get_close_matches(u, options, n=1, cutoff=0.75)] if near]
        if hints:
            message = f"{message}\n  " + "\n  ".join(hints)
        return super().error(message, ex)


def _import(class_path: str) -> type:
    """The class a config's ``class_path`` names."""
    module, _, name = str(class_path).rpartition(".")
    return getattr(importlib.import_module(module), name)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, jsonargparse.DefaultHelpFormatter):
    """jsonargparse's help, with the description's lines kept as written."""


#: ``pc-lightning --help``'s text: Lightning's subcommands are listed below it, these two are not
DESCRIPTION = """Procedure cloning with PyTorch Lightning.

  pc-lightning fit --config conf/maze.yaml      train (fit), then test, validate or predict a checkpoint
  pc-lightning study --config conf/study/maze.yaml [--quick]   a grid of fits: held-out score
                                                 against training data, every variant, with intervals
  pc-lightning summary RUN [RUN ...] --metrics TAG [TAG ...]   the chosen checkpoints of a few runs
                                                 (mean, 95% t-interval)

Each takes --help."""


#: --ckpt_path values that name no file (Lightning resolves them; "last" is resolved here)
SPECIAL_CKPT_PATHS = ("last", "best", "hpc", "registry")


class ProcedureCLI(LightningCLI):
    def instantiate_classes(self) -> None:
        """Lightning's, with a domain's :class:`~pc_lightning.errors.ConfigError` (raised while
        its DataModule is built, where jsonargparse quotes it inside a Union error and a dump of
        the arguments) raised again on its own, for :func:`main` to print as one line."""
        try:
            super().instantiate_classes()
        except Exception as e:
            line = config_error_line(e)
            if line is None:
                raise
            key, _, message = line.partition(": ")
            raise ConfigError(key, message) from None

    def before_instantiate_classes(self) -> None:
        """``--ckpt_path last``: resume the newest run of this config, logging into it.

        Lightning looks for ``last`` only in the new run's own folder (a new TensorBoard
        version), so on its own it would silently start from scratch. The resumed run's
        TensorBoard log purges what the dead run logged from the checkpoint's step on, so
        no step is drawn twice (:meth:`before_fit`)."""
        self._name_run(self.config[self.subcommand] if self.subcommand else self.config)
        if self.subcommand is None:
            return
        cfg = self.config[self.subcommand]
        if self.subcommand in ("test", "validate", "predict"):
            self._beside_checkpoint(cfg)
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
        self._checkpoint = self._check_file(cfg.ckpt_path, cfg.model.variant)
        version = found[-1].parent.parent.name.removeprefix("version_")
        args.version = int(version) if version.isdigit() else version
        self._resume_step = int(_read_checkpoint(cfg.ckpt_path).get("global_step", 0))
        print(f"Resuming from {cfg.ckpt_path} (step {self._resume_step})", file=sys.stderr)

    @staticmethod
    def _name_run(cfg) -> None:
        """A TensorBoard logger without a ``name`` (``conf/base.yaml``'s) logs to
        ``<save_dir>/<domain>_<variant>``: ``runs/maze_pc``, ``runs/sweep_bc``."""
        args = getattr(cfg.trainer.get("logger"), "init_args", None)
        data = cfg.get("data")
        if args is None or "name" not in args or args.get("name") is not None or data is None:
            return
        args.name = f"{_import(data.class_path).domain}_{cfg.model.variant}"

    def _beside_checkpoint(self, cfg) -> None:
        """``test`` (validate, predict) of a run's checkpoint logs into that run's folder:
        ``<run>/test/version_K`` (its own TensorBoard run, so its step-0 numbers do not fall
        on the training curves, and K counts the evaluations of that run), and the
        checkpoint callbacks keep the run's own folder, so Lightning does not warn that
        their "dirpath has changed". A checkpoint outside a run folder: a new run, as before."""
        path = cfg.get("ckpt_path")
        if not path or path in SPECIAL_CKPT_PATHS:
            return
        path = Path(path)
        if path.parent.name != "checkpoints" or not path.parent.parent.name.startswith("version_"):
            return
        logger = cfg.trainer.get("logger")
        args = getattr(logger, "init_args", None)
        if args is None or "save_dir" not in args:
            return
        args.save_dir, args.name, args.version = str(path.parent.parent), self.subcommand, None
        for cb in cfg.trainer.get("callbacks") or []:
            if getattr(cb, "init_args", None) is not None and issubclass(_import(cb.class_path), ModelCheckpoint):
                cb.init_args.dirpath = str(path.parent)

    # ----------------------------------------------------------------- checkpoint checks
    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        self._checkpoint = self.read_checkpoint()

    def read_checkpoint(self) -> dict | None:
        """Right after parsing, before Lightning reads the checkpoint's hyperparameters into the
        config and before any data or run folder is made: the ``--ckpt_path`` file exists, is
        a checkpoint of this project, and has the config's variant. Each failure names the
        file and what is wrong. Returns the checkpoint's hyperparameters (None: no file given)."""
        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        if path is None or path in SPECIAL_CKPT_PATHS:
            return None  # "last" is resolved (and then checked) in before_instantiate_classes
        return self._check_file(path, self.config[sub].model.variant)

    @staticmethod
    def _check_file(path: str, variant: str) -> dict:
        where = f"--ckpt_path {path}"
        if not Path(path).is_file():
            raise SystemExit(f"{where}: no such file")
        try:
            ckpt = _read_checkpoint(path)
        except Exception as e:
            first = str(e).splitlines()[0][:100] if str(e) else "unreadable"
            raise SystemExit(f"{where}: not a checkpoint that can be read ({type(e).__name__}: {first})")
        hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
        if not hp or "spec" not in hp or "state_dict" not in ckpt:
            raise SystemExit(f"{where}: not a pc-lightning checkpoint (no ProcedureCloner hyperparameters)")
        if hp.get("variant") != variant:
            raise SystemExit(f"{where}: a {hp.get('variant')!r} checkpoint, but model.variant is {variant!r} "
                             f"(use that variant's config, or --model.variant {hp.get('variant')})")
        return hp

    def check_domain(self) -> None:
        """Once the DataModule exists (before it generates anything): the checkpoint's token
        spec is this domain's (a maze checkpoint under a MinAtar config is caught here)."""
        hp = getattr(self, "_checkpoint", None)
        if hp is None:
            return
        theirs, ours = asdict(TokenSpec(**hp["spec"])), asdict(self.datamodule.spec)
        differ = [k for k in ours if theirs.get(k) != ours[k]]
        if differ:
            path = self.config[self.subcommand].get("ckpt_path")
            raise SystemExit(f"--ckpt_path {path}: its token spec differs from {type(self.datamodule).__name__}'s "
                             f"in {', '.join(differ)}: a checkpoint of another domain or game?")

    def before_fit(self) -> None:
        self.check_domain()
        step = getattr(self, "_resume_step", None)
        for logger in self.trainer.loggers if step is not None else []:
            # events of this run's folder from the checkpoint's step on (the dead run's
            # unsaved steps, which this run logs again) are discarded on read
            if isinstance(logger, TensorBoardLogger):
                set_purge_step(logger, step)

    def before_validate(self) -> None:
        self.check_domain()

    def before_test(self) -> None:
        self.check_domain()

    def before_predict(self) -> None:
        self.check_domain()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("model.variant", "data.init_args.variant")
        parser.link_arguments("model.window", "data.init_args.window")
        parser.link_arguments("model.n_layers", "data.init_args.n_layers")
        parser.link_arguments("data.spec", "model.spec", apply_on="instantiate")


class _NoTips(logging.Filter):
    """Drops Lightning's advertisements ("💡 Tip: ... litlogger / litmodels") and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def quiet_console() -> None:
    """What the CLI's console leaves out: Lightning's advertisements, and the deprecation
    warning Lightning's own code raises about torch's ``LeafSpec`` (not ours to fix).
    Filters scoped to those messages; every other warning still shows."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in rank_zero.filters):
        rank_zero.addFilter(_NoTips())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def build_cli(args: list[str] | None = None, run: bool = True) -> ProcedureCLI:
    """Parse ``args`` (default: the command line) and, with ``run``, run the subcommand
    (without it, ``args`` has no subcommand: the classes are only instantiated); returns the CLI."""
    quiet_console()
    jsonargparse.set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    return ProcedureCLI(
        ProcedureCloner,
        ProcedureDataModule,
        subclass_mode_data=True,
        parser_class=ProcedureParser,
        # no abbreviations: --model.n_layer is an error (naming n_layers), not n_layers
        parser_kwargs={"parser_mode": "omegaconf+", "allow_abbrev": False, "description": DESCRIPTION,
                       "formatter_class": _HelpFormatter},
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``pc-lightning`` console script: Lightning's subcommands (fit,
    validate, test, predict), ``study`` (a grid of fits, :mod:`pc_lightning.study`) and
    ``summary`` (the chosen checkpoints of runs over seeds, :mod:`pc_lightning.summary`).
    Returns None: the script passes the return value to ``sys.exit``, where anything else
    would be a failure status."""
    try:
        _main(sys.argv[1:] if args is None else args, args)
    except ConfigError as e:  # a value the run cannot use: one line that names its key, as for a misspelled key
        print(f"pc-lightning: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


#: Old data argument names and their one name in every domain (``data.Splits``), so that an old
#: config gets a line that names the new key instead of "unrecognized arguments".
RENAMED = {
    **{f"n_train_{e}": "n_train" for e in ("mazes", "layouts", "configs", "episodes")},
    **{f"n_val_{e}": "n_val" for e in ("mazes", "layouts", "configs", "episodes")},
    **{f"n_val_env_{e}": "n_val_envs" for e in ("mazes", "layouts", "configs", "episodes")},
    **{f"n_heldout_{e}": "n_heldout" for e in ("mazes", "layouts", "configs", "episodes")},
    "trajectories_per_maze": "train_episodes", "episodes_per_layout": "train_episodes",
    "val_trajectories_per_maze": "val_episodes", "val_episodes_per_layout": "val_episodes",
    "val_env_episodes_per_maze": "val_envs_episodes", "val_env_episodes_per_layout": "val_envs_episodes",
    "heldout_episodes_per_maze": "heldout_episodes", "heldout_episodes_per_layout": "heldout_episodes",
    "train_eval_episodes_per_maze": "train_envs_episodes", "train_eval_episodes_per_layout": "train_envs_episodes",
    "train_eval_configs": "n_train_envs", "train_eval_episodes": "n_train_envs",
}


def check_renamed(argv: list[str]) -> None:
    """A data argument under its old name (on the command line or as a key of a ``--config``
    file) is a :class:`ConfigError` that gives the new one, rather than jsonargparse's
    "unrecognized arguments"."""
    texts = [a.split("=")[0] for a in argv if a.startswith("--")]
    for flag, value in zip(argv, argv[1:]):
        if flag == "--config" and Path(value).is_file():
            texts += re.findall(r"([A-Za-z_.]+)\s*:", Path(value).read_text())
    for text in texts:
        old = text.rsplit(".", 1)[-1].lstrip("-")
        if old in RENAMED and ("init_args" in text or text == old):
            raise ConfigError(f"data.init_args.{old}", f"was renamed to data.init_args.{RENAMED[old]} (the same name "
                              "in every domain: docs/adding_a_domain.md)")


def _main(argv: list[str], args: list[str] | None) -> None:
    check_renamed(argv)
    if argv[:1] == ["study"]:
        from pc_lightning.study import main as study_main

        study_main(argv[1:])
        return
    if argv[:1] == ["summary"]:
        from pc_lightning.summary import main as summary_main

        summary_main(argv[1:])
        return
    build_cli(args)


if __name__ == "__main__":
    main()
