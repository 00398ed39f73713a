"""PointMazeDataModule: the BFS + PD expert's episodes on training layouts; rollout suites on
validation layouts (checkpoint selection), held-out layouts (the report, optionally larger)
and the training layouts (the gap)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pc_lightning.data import ProcedureDataModule, ProcedureRecords
from pc_lightning.data.parallel import run_jobs
from pc_lightning.domains.maze.env import check_size
from pc_lightning.domains.pointmaze import codec
from pc_lightning.domains.pointmaze.codec import BallBins
from pc_lightning.domains.pointmaze.env import layout
from pc_lightning.domains.pointmaze.expert import force_bins
from pc_lightning.domains.pointmaze.suite import EPISODES_PER_LAYOUT, PointMazeSuite, episode_seed, expert_episode
from pc_lightning.errors import ConfigError, at_least, in_range
from pc_lightning.spec import TokenSpec

#: ``train_envs`` rolls out on at most this many training layouts.
MAX_TRAIN_EVAL_LAYOUTS = 20


def expert_records(layout_seed: int, group: int, size: int, shortcut_prob: float, n_episodes: int,
                   ball: dict, n_bins: int, repeat: int) -> dict[str, Any]:
    """Every decision of the expert's first ``n_episodes`` episodes on one layout, as records."""
    walls = layout(size, layout_seed, shortcut_prob)
    states, procedures, actions, solved = [], [], [], []
    for j in range(n_episodes):
        run = expert_episode(walls, episode_seed(layout_seed, j), BallBins(**ball), n_bins, repeat)
        states += run["states"]
        procedures += run["procedures"]
        actions += [a.tolist() for a in run["actions"]]
        solved.append(run["success"])
    return {"states": states, "procedures": procedures, "actions": actions, "groups": [group] * len(states),
            "solved": solved}


class PointMazeDataModule(ProcedureDataModule):
    """BFS procedure cloning for a ball pushed by forces through tunnel mazes (MuJoCo).

    Args:
        size: layout side, 3k+1 (10, 13, 16, ...).
        n_train_layouts, episodes_per_layout: the expert data (every decision of each episode).
        n_val_layouts, val_episodes_per_layout: teacher-forced validation data, unseen layouts.
        n_val_env_layouts, val_env_episodes_per_layout: rollout suite ``val_envs`` (validation
            layouts, training size): the suite ``best.ckpt`` is chosen on.
        n_heldout_layouts, heldout_episodes_per_layout: rollout suite ``heldout``, the test set.
        heldout_size: side of the held-out layouts (default ``size``; larger: zero-shot).
        train_eval_episodes_per_layout: rollout suite ``train_envs`` on the training layouts
            (at most the first 20; 0 = off).
        shortcut_prob: chance of opening each remaining inner wall (loops).
        sub_cells, velocity_bins, max_speed: the ball token (:class:`.codec.BallBins`).
        force_bins: bins per force axis over [-1, 1] (the action block).
        repeat: physics steps per decision.
        Others (``seed``, ``workers``, the loaders'): see :class:`~pc_lightning.data.ProcedureDataModule`.
    """

    domain = "pointmaze"
    generator_version = "1"
    fit_suites = ("val_envs",)  # a weak model's episodes run to the step limit: the test suites once, at the end

    def __init__(self, size: int = 16, n_train_layouts: int = 5, episodes_per_layout: int = 4,
                 n_val_layouts: int = 2, val_episodes_per_layout: int = 2, n_val_env_layouts: int = 10,
                 val_env_episodes_per_layout: int = 5, n_heldout_layouts: int = 20,
                 heldout_episodes_per_layout: int = 5, heldout_size: int | None = None,
                 train_eval_episodes_per_layout: int = 2, shortcut_prob: float = 0.1, sub_cells: int = 3,
                 velocity_bins: int = 5, max_speed: float = 5.0, force_bins: int = 5, repeat: int = 8,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_size(size)
        if heldout_size is not None:
            check_size(heldout_size, "data.init_args.heldout_size")
        half = EPISODES_PER_LAYOUT // 2
        at_least(1, n_train_layouts=n_train_layouts, episodes_per_layout=episodes_per_layout,
                 n_val_layouts=n_val_layouts, val_episodes_per_layout=val_episodes_per_layout,
                 n_val_env_layouts=n_val_env_layouts, val_env_episodes_per_layout=val_env_episodes_per_layout,
                 n_heldout_layouts=n_heldout_layouts, heldout_episodes_per_layout=heldout_episodes_per_layout,
                 sub_cells=sub_cells, velocity_bins=velocity_bins, repeat=repeat)
        at_least(2, force_bins=force_bins)
        at_least(0, train_eval_episodes_per_layout=train_eval_episodes_per_layout)
        in_range(0.0, 1.0, shortcut_prob=shortcut_prob)
        for key, n in (("episodes_per_layout", episodes_per_layout), ("val_episodes_per_layout", val_episodes_per_layout),
                       ("val_env_episodes_per_layout", val_env_episodes_per_layout),
                       ("heldout_episodes_per_layout", heldout_episodes_per_layout),
                       ("train_eval_episodes_per_layout", train_eval_episodes_per_layout)):
            if n > half:
                raise ConfigError(f"data.init_args.{key}", f"must be <= {half} (a layout's episode seeds are "
                                  f"split between the expert data and the suites), got {n}")
        if max_speed <= 0:
            raise ConfigError("data.init_args.max_speed", f"must be > 0, got {max_speed}")
        self.size = size
        self.heldout_size = heldout_size or size
        self.n_layouts = {"train": n_train_layouts, "val": n_val_layouts}
        self.episodes = {"train": episodes_per_layout, "val": val_episodes_per_layout}
        self.n_val_env_layouts, self.val_env_episodes_per_layout = n_val_env_layouts, val_env_episodes_per_layout
        self.n_heldout_layouts, self.heldout_episodes_per_layout = n_heldout_layouts, heldout_episodes_per_layout
        self.train_eval_episodes_per_layout = train_eval_episodes_per_layout
        self.shortcut_prob = shortcut_prob
        self.ball = BallBins(sub_cells, velocity_bins, float(max_speed))
        self.force_bins = force_bins
        self.repeat = repeat

    @property
    def spec(self) -> TokenSpec:
        return codec.token_spec(self.ball, force_bins(self.force_bins))

    def generator_config(self, split: str) -> dict:
        return {"size": self.size, "seeds": self.seeds(split, self.n_layouts[split]),
                "episodes": self.episodes[split], "shortcut_prob": self.shortcut_prob,
                "ball": asdict(self.ball), "force_bins": self.force_bins, "repeat": self.repeat}

    def generate(self, split: str) -> ProcedureRecords:
        jobs = [dict(layout_seed=s, group=g, size=self.size, shortcut_prob=self.shortcut_prob,
                     n_episodes=self.episodes[split], ball=asdict(self.ball), n_bins=self.force_bins,
                     repeat=self.repeat) for g, s in enumerate(self.seeds(split, self.n_layouts[split]))]
        parts = run_jobs(expert_records, jobs, self.workers, f"PointMaze expert, {split} layouts", unit="layout")
        solved = [x for p in parts for x in p["solved"]]
        return ProcedureRecords.concat(parts, meta={"expert_success": sum(solved) / len(solved)})

    def augment_fn(self) -> codec.DihedralAugment:
        return codec.DihedralAugment(self.ball, self.force_bins)

    def suite(self, seeds: list[int], size: int, episodes: int) -> PointMazeSuite:
        return PointMazeSuite(seeds, size, self.shortcut_prob, episodes, self.ball, self.force_bins, self.repeat)

    def build_suites(self) -> dict[str, PointMazeSuite]:
        """Validation and held-out layouts come from their own seed ranges, checked unequal to
        every training layout (and held-out to validation)."""
        train = {layout(self.size, s, self.shortcut_prob).tobytes() for s in self.seeds("train", self.n_layouts["train"])}
        val = self.seeds("val", self.n_val_env_layouts)
        val_layouts = {layout(self.size, s, self.shortcut_prob).tobytes() for s in val}
        heldout = self.seeds("heldout", self.n_heldout_layouts)
        clash = [s for s in heldout if layout(self.heldout_size, s, self.shortcut_prob).tobytes() in train | val_layouts]
        if val_layouts & train or clash:
            raise ConfigError("data.init_args.size", f"{self.size}x{self.size} layouts repeat across splits: "
                              "use larger layouts")
        suites = {"val_envs": self.suite(val, self.size, self.val_env_episodes_per_layout),
                  "heldout": self.suite(heldout, self.heldout_size, self.heldout_episodes_per_layout)}
        if self.train_eval_episodes_per_layout > 0:
            train_seeds = self.seeds("train", self.n_layouts["train"])[:MAX_TRAIN_EVAL_LAYOUTS]
            suites["train_envs"] = self.suite(train_seeds, self.size, self.train_eval_episodes_per_layout)
        return suites
