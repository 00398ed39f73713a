"""A study's config: its grid of cells (variant x x-value x seed), each an ordinary fit
and its tests, and the hash that says whether a cell is already done."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT_KEYS = {"name", "variants", "x", "seeds", "metric", "select", "overrides", "fit", "test", "extra_tests", "expert",
             "workers", "threads", "memory_gb", "out", "quick", "title", "time_to"}


@dataclass
class Cell:
    """One run of the grid."""

    variant: str
    x: Any
    seed: int
    args: list[str]  # the arguments of both fit and test (config, overrides, x, seed)
    config_files: list[Path]
    fit_args: list[str] = field(default_factory=list)  # the fit's own, after args
    test_args: list[str] = field(default_factory=list)  # every test's own, after args
    extras: dict[str, list[str]] = field(default_factory=dict)  # the extra tests it runs, by name: their args

    @property
    def name(self) -> str:
        return f"{self.variant}-x{self.x}-s{self.seed}"

    @property
    def digest(self) -> str:
        """Hash of everything that defines the cell: its arguments and its configs' bytes."""
        h = hashlib.sha256(json.dumps([self.args, self.fit_args, self.test_args, self.extras]).encode())
        for f in self.config_files:
            h.update(f.read_bytes())
        return h.hexdigest()[:12]


@dataclass
class Study:
    """A parsed study config (see the module docstring and ``conf/study/maze.yaml``)."""

    name: str
    variants: dict[str, str]
    x_key: str
    x_label: str
    x_values: list[Any]
    seeds: list[int]
    metric: str
    overrides: list[str]
    fit: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    select: str = ""
    time_to: dict[str, Any] = field(default_factory=dict)
    extra_tests: dict[str, list[str]] = field(default_factory=dict)
    extra_only: dict[str, dict[str, list]] = field(default_factory=dict)  # per extra test: {"variants", "x"} it runs on
    extra_metric: dict[str, str] = field(default_factory=dict)  # per extra test: the metric it reads, if not ``metric``
    expert: float | None = None
    workers: int | None = None
    threads: int = 1
    memory_gb: float | None = None  # per cell: bounds the local pool, and a Ray task's reservation
    out: Path = Path("runs/study")
    title: str = ""

    @classmethod
    def load(cls, path: str | Path, quick: bool = False) -> "Study":
        path = Path(path)
        if not path.is_file():
            raise SystemExit(f"--config {path}: no such file")
        raw = yaml.safe_load(path.read_text()) or {}
        unknown = set(raw) - ROOT_KEYS
        if unknown:
            raise SystemExit(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(ROOT_KEYS)})")
        for key in ("name", "variants", "x", "seeds", "metric"):
            if key not in raw:
                raise SystemExit(f"{path}: missing key {key!r}")
        if quick:
            q = raw.get("quick")
            if not q:
                raise SystemExit(f"{path}: --quick needs a 'quick' section")
            for key, value in q.items():
                if key == "x_values":
                    raw["x"]["values"] = value
                elif key == "variants":
                    raw["variants"] = {v: raw["variants"][v] for v in value}
                elif key == "overrides":
                    raw["overrides"] = list(raw.get("overrides", [])) + list(value)
                elif key in ("fit", "test"):
                    raw[key] = list(raw.get(key, [])) + list(value)
                elif key in ("seeds", "extra_tests", "name", "time_to"):
                    raw[key] = value
                else:
                    raise SystemExit(f"{path}: quick.{key} is not a key --quick can set")
        x = raw["x"]
        out = Path(raw.get("out", f"runs/study/{raw['name']}"))
        if quick:  # its cells share names with the full grid's: its own folder, so neither replaces the other
            out = out.with_name(out.name + "-quick")
        return cls(name=raw["name"], variants=dict(raw["variants"]), x_key=x["key"], x_label=x.get("label", x["key"]),
                   x_values=list(x["values"]), seeds=[int(s) for s in raw["seeds"]], metric=raw["metric"],
                   overrides=[str(a) for a in raw.get("overrides", [])], fit=[str(a) for a in raw.get("fit", [])],
                   test=[str(a) for a in raw.get("test", [])],
                   select=raw.get("select", raw["metric"].replace("heldout/", "val_envs/", 1)),
                   time_to=dict(raw.get("time_to") or {}),
                   extra_tests={k: [str(a) for a in (v["args"] if isinstance(v, dict) else v)]
                                for k, v in (raw.get("extra_tests") or {}).items()},
                   extra_only={k: {f: list(v[f]) for f in ("variants", "x") if f in v}
                               for k, v in (raw.get("extra_tests") or {}).items() if isinstance(v, dict)},
                   extra_metric={k: str(v["metric"]) for k, v in (raw.get("extra_tests") or {}).items()
                                 if isinstance(v, dict) and "metric" in v},
                   expert=raw.get("expert"), workers=raw.get("workers"), threads=int(raw.get("threads", 1)),
                   memory_gb=raw.get("memory_gb"),
                   out=out, title=raw.get("title", ""))

    def only_variants(self, names: list[str]) -> None:
        """Keep the variants ``names`` (in the config's order); SystemExit naming an unknown one."""
        unknown = [n for n in names if n not in self.variants]
        if unknown:
            raise SystemExit(f"--variants {' '.join(unknown)}: not in the study (it has {', '.join(self.variants)})")
        self.variants = {v: c for v, c in self.variants.items() if v in names}

    def extra_applies(self, name: str, cell: Cell) -> bool:
        """Whether extra test ``name`` runs on ``cell`` (an extra test may name its variants and x values)."""
        only = self.extra_only.get(name, {})
        return cell.variant in only.get("variants", [cell.variant]) and cell.x in only.get("x", [cell.x])

    def cells(self) -> list[Cell]:
        """Every cell, seed by seed: an interrupted study has whole grids of its first seeds."""
        # a config stacked by the overrides (``--config overlay.yaml``) defines every cell too
        stacked = [f for i, a in enumerate(self.overrides[:-1]) if a == "--config"
                   for f in config_chain(Path(self.overrides[i + 1]))]
        files = {variant: config_chain(Path(config)) + stacked for variant, config in self.variants.items()}
        out = []
        for seed in self.seeds:
            for variant, config in self.variants.items():
                for x in self.x_values:
                    args = ["--config", config, *self.overrides, f"--{self.x_key}", str(x),
                            "--seed_everything", str(seed)]
                    cell = Cell(variant, x, seed, args, files[variant], self.fit, self.test)
                    cell.extras = {n: a for n, a in self.extra_tests.items() if self.extra_applies(n, cell)}
                    out.append(cell)
        return out


def config_chain(path: Path) -> list[Path]:
    """A config and the configs it includes (``config: other.yaml``), whose bytes define a cell."""
    if not path.is_file():
        raise SystemExit(f"study variant config {path}: no such file")
    files = [path]
    raw = yaml.safe_load(path.read_text()) or {}
    if isinstance(raw, dict) and isinstance(raw.get("config"), str):
        files += config_chain(path.parent / raw["config"])
    return files
