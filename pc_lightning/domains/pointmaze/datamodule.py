"""PointMazeDataModule: the BFS + PD expert's episodes on training layouts; rollout suites on
validation layouts (checkpoint selection), held-out layouts (the report, optionally larger)
and the training layouts (the gap)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pc_lightning.data import ProcedureDataModule, Splits
from pc_lightning.domains.maze.env import check_size
from pc_lightning.domains.pointmaze import codec
from pc_lightning.domains.pointmaze.codec import BallBins
from pc_lightning.domains.pointmaze.env import layout
from pc_lightning.domains.pointmaze.expert import force_bins
from pc_lightning.domains.pointmaze.suite import EPISODES_PER_LAYOUT, PointMazeSuite, episode_seed, expert_episode
from pc_lightning.errors import ConfigError, at_least, in_range
from pc_lightning.spec import TokenSpec

#: ``train_envs`` rolls out on at most this many training layouts by default.
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
    """BFS procedure cloning for a ball pushed by forces through tunnel mazes (MuJoCo); an
    environment is a layout, its episodes are random (goal, start) pairs with their noise.

    Args:
        size: layout side, 3k+1 (10, 13, 16, ...).
        heldout_size: side of the held-out layouts (default ``size``; larger: zero-shot).
        shortcut_prob: chance of opening each remaining inner wall (loops).
        sub_cells, velocity_bins, max_speed: the ball token (:class:`.codec.BallBins`).
        force_bins: bins per force axis over [-1, 1] (the action block).
        repeat: physics steps per decision.
        Others (the splits' sizes, ``seed``, ``workers``, the loaders'): see
        :class:`~pc_lightning.data.ProcedureDataModule`. The defaults: 5 training layouts x
        4 expert episodes; suites on 10 validation layouts x 5 episodes (the checkpoint's
        choice), 20 held-out layouts x 5 (the test set) and the training layouts (at most
        20) x 2. A layout has at most 50 episodes of each kind (data, suites).
    """

    domain = "pointmaze"
    generator_version = "1"
    fit_suites = ("val_envs",)  # a weak model's episodes run to the step limit: the test suites once, at the end
    default_splits = Splits(n_train=5, train_episodes=4, n_val=2, val_episodes=2, n_val_envs=10, val_envs_episodes=5,
                            n_heldout=20, heldout_episodes=5, n_train_envs=MAX_TRAIN_EVAL_LAYOUTS,
                            train_envs_episodes=2)
    expert_name, environment_name = "PointMaze expert", "layout"
    expert_records = staticmethod(expert_records)

    def __init__(self, size: int = 16, heldout_size: int | None = None, shortcut_prob: float = 0.1,
                 sub_cells: int = 3, velocity_bins: int = 5, max_speed: float = 5.0, force_bins: int = 5,
                 repeat: int = 8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_size(size)
        if heldout_size is not None:
            check_size(heldout_size, "data.init_args.heldout_size")
        at_least(1, sub_cells=sub_cells, velocity_bins=velocity_bins, repeat=repeat)
        at_least(2, force_bins=force_bins)
        in_range(0.0, 1.0, shortcut_prob=shortcut_prob)
        half = EPISODES_PER_LAYOUT // 2
        for key in ("train_episodes", "val_episodes", "val_envs_episodes", "heldout_episodes", "train_envs_episodes"):
            if getattr(self.sizes, key) > half:
                raise ConfigError(f"data.init_args.{key}", f"must be <= {half} (a layout's episode seeds are "
                                  f"split between the expert data and the suites), got {getattr(self.sizes, key)}")
        if max_speed <= 0:
            raise ConfigError("data.init_args.max_speed", f"must be > 0, got {max_speed}")
        self.size = size
        self.heldout_size = heldout_size or size
        self.shortcut_prob = shortcut_prob
        self.ball = BallBins(sub_cells, velocity_bins, float(max_speed))
        self.force_bins = force_bins
        self.repeat = repeat

    @property
    def spec(self) -> TokenSpec:
        return codec.token_spec(self.ball, force_bins(self.force_bins))

    def generator_config(self, split: str) -> dict:
        return {"size": self.size, "seeds": self.seeds(split), "episodes": self.sizes.episodes(split),
                "shortcut_prob": self.shortcut_prob, "ball": asdict(self.ball), "force_bins": self.force_bins,
                "repeat": self.repeat}

    def expert_job(self, seed: int, group: int, episodes: int) -> dict[str, Any]:
        return dict(layout_seed=seed, group=group, size=self.size, shortcut_prob=self.shortcut_prob,
                    n_episodes=episodes, ball=asdict(self.ball), n_bins=self.force_bins, repeat=self.repeat)

    def expert_meta(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        solved = [x for p in parts for x in p["solved"]]
        return {"expert_success": sum(solved) / len(solved)}

    def augment_fn(self) -> codec.DihedralAugment:
        return codec.DihedralAugment(self.ball, self.force_bins)

    def suite_size(self, suite: str) -> int:
        return self.heldout_size if suite == "heldout" else self.size

    def environment_key(self, suite: str, seed: int) -> bytes:
        return layout(self.suite_size(suite), seed, self.shortcut_prob).tobytes()

    def make_suite(self, name: str, seeds: list[int], episodes: int) -> PointMazeSuite:
        return PointMazeSuite(seeds, self.suite_size(name), self.shortcut_prob, episodes, self.ball, self.force_bins,
                              self.repeat)
