"""PointMaze evaluation suites: batched episodes on a list of layouts, the expert's episodes
on them (its length is the reference), probes of its procedure, and an animated episode."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pc_lightning.domains.maze.codec import maps_match_up_to_ties
from pc_lightning.domains.maze.expert import bfs_distances
from pc_lightning.domains.pointmaze import codec
from pc_lightning.domains.pointmaze.codec import BallBins
from pc_lightning.domains.pointmaze.env import PointMazeEpisode, layout
from pc_lightning.domains.pointmaze.expert import PointMazeExpert, force_bins, play_expert
from pc_lightning.eval.rollout import procedure_accuracy
from pc_lightning.eval.suite import EpisodeBatch, EvalSuite, shard

#: An episode's ``episode_seed`` is ``layout seed * EPISODES_PER_LAYOUT + j``: expert data uses
#: j < EPISODES_PER_LAYOUT // 2, suites the upper half, so no suite replays a data episode.
EPISODES_PER_LAYOUT = 100


def episode_seed(layout_seed: int, j: int) -> int:
    """The seed of episode ``j`` on layout ``layout_seed`` (its goal, start and noise)."""
    return layout_seed * EPISODES_PER_LAYOUT + j


def decision_limit(walls: np.ndarray, seed: int) -> int:
    """Decisions an episode may take: 4 per cell of the BFS route plus the layout's side
    (the expert takes about 2.8 per cell, ``docs/domains/pointmaze.md``)."""
    goal, start = PointMazeEpisode.cells(walls, seed)
    return 4 * int(bfs_distances(walls, goal)[start[0], start[1]]) + len(walls)


def expert_episode(walls: np.ndarray, seed: int, ball: BallBins, n_bins: int, repeat: int) -> dict:
    """The expert's episode ``seed`` on ``walls``, with its procedures: ``success``,
    ``decisions``, ``states`` (T, H, W) tokens and ``procedures`` (T arrays (L_t+1, H, W))."""
    ep = PointMazeEpisode(walls, seed, decision_limit(walls, seed), repeat)
    run = play_expert(ep, PointMazeExpert(walls, ep.goal_cell, bins=force_bins(n_bins), ball=ball),
                      with_procedure=True)
    ep.close()
    states = [codec.encode_state(walls, o["goal_cell"], o["pos"], o["vel"], ball) for o in run["observations"]]
    return {"success": run["success"], "decisions": run["decisions"], "states": states,
            "procedures": [d.procedure for d in run["plans"]], "actions": [d.bins for d in run["plans"]]}


class PointMazeEpisodes(EpisodeBatch):
    """E PointMaze episodes stepped together; an action is the force's 2 bin ids."""

    def __init__(self, walls: list[np.ndarray], seeds: list[int], ball: BallBins, n_bins: int, repeat: int,
                 expert_decisions: np.ndarray) -> None:
        self.episodes = [PointMazeEpisode(w, s, decision_limit(w, s), repeat) for w, s in zip(walls, seeds)]
        self.ball = ball
        self.bins = force_bins(n_bins)
        self.expert_decisions = expert_decisions
        self.done = np.array([e.done for e in self.episodes], dtype=bool)

    def observe(self, idx: np.ndarray) -> np.ndarray:
        out = []
        for i in idx:
            e = self.episodes[i]
            o = e.observe()
            out.append(codec.encode_state(e.walls, e.goal_cell, o["pos"], o["vel"], self.ball))
        return np.stack(out)

    def step(self, idx: np.ndarray, actions: np.ndarray) -> None:
        forces = self.bins.decode(np.asarray(actions).reshape(len(idx), 2))
        for i, f in zip(idx, forces):
            self.done[i] = self.episodes[i].step(f)
            if self.done[i]:
                self.episodes[i].close()

    def stats(self) -> dict[str, np.ndarray]:
        success = np.array([e.success for e in self.episodes], dtype=np.float64)
        decisions = np.array([e.decisions for e in self.episodes], dtype=np.float64)
        ok = success > 0
        return {"success_rate": success, "return": success, "episode_length": decisions,
                "length_ratio": decisions[ok] / np.maximum(self.expert_decisions[ok], 1)}


class PointMazeSuite(EvalSuite):
    """Rollouts on layouts ``seeds`` (``episodes`` goal/start pairs each, episodes
    ``EPISODES_PER_LAYOUT // 2 + j``), and probes: a state a third of the way into the
    expert's episode, with its procedure."""

    codec = codec

    def __init__(self, seeds: list[int], size: int, shortcut_prob: float, episodes: int,
                 ball: BallBins, n_bins: int, repeat: int, n_probes: int = 16) -> None:
        self.size, self.ball, self.n_bins, self.repeat, self.n_probes = size, ball, n_bins, repeat, n_probes
        self.max_procedure_steps = size * size
        self.walls, self.seeds = [], []
        for s in seeds:
            walls = layout(size, s, shortcut_prob)
            for j in range(episodes):
                self.walls.append(walls)
                self.seeds.append(episode_seed(s, EPISODES_PER_LAYOUT // 2 + j))
        self._expert: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.seeds)

    def expert_episode(self, i: int) -> dict:
        """The expert's play of episode ``i`` (cached)."""
        if i not in self._expert:
            self._expert[i] = expert_episode(self.walls[i], self.seeds[i], self.ball, self.n_bins, self.repeat)
        return self._expert[i]

    def expert_stats(self) -> dict[str, float]:
        """The expert's success rate and mean decisions on this suite."""
        runs = [self.expert_episode(i) for i in range(len(self))]
        return {"success_rate": float(np.mean([r["success"] for r in runs])),
                "episode_length": float(np.mean([r["decisions"] for r in runs]))}

    def episodes(self, rank: int = 0, world_size: int = 1) -> PointMazeEpisodes:
        idx = shard(len(self), rank, world_size)
        expert = np.array([self.expert_episode(i)["decisions"] for i in idx], dtype=np.float64)
        return PointMazeEpisodes([self.walls[i] for i in idx], [self.seeds[i] for i in idx], self.ball,
                                 self.n_bins, self.repeat, expert)

    def probes(self, rank: int = 0, world_size: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
        states, procedures = [], []
        for i in shard(len(self), rank, world_size)[: self.n_probes]:
            run = self.expert_episode(i)
            t = len(run["states"]) // 3
            states.append(run["states"][t])
            procedures.append(run["procedures"][t])
        empty = np.zeros((0, self.size, self.size), np.int64)
        return (np.stack(states) if states else empty), procedures

    def procedure_metrics(self, states: np.ndarray, expert: list[np.ndarray], generated: Tensor,
                          lengths: Tensor) -> dict[str, np.ndarray]:
        """``procedure_acc_ties``: the maze's, maps equal up to BFS ties."""
        return {"procedure_acc_ties": procedure_accuracy(expert, generated, lengths, maps_match_up_to_ties)}

    animation_tag = "episode_ball_path_over_model_bfs_map"

    @torch.no_grad()
    def animate(self, module, scale: int = 12) -> np.ndarray:
        """Episode 0 played by ``module``, top-down: the layout, the goal, the model's last BFS
        map (its imagined route), the ball and its path so far. (T, H, W, 3) uint8."""
        from PIL import Image, ImageDraw

        from pc_lightning.domains.maze.codec import render_grid

        walls, seed = self.walls[0], self.seeds[0]
        ep = PointMazeEpisode(walls, seed, decision_limit(walls, seed), self.repeat)
        bins = force_bins(self.n_bins)
        h, w = walls.shape
        path, frames = [], []
        while not ep.done:
            o = ep.observe()
            tokens = codec.encode_state(walls, ep.goal_cell, o["pos"], o["vel"], self.ball)
            state = torch.from_numpy(tokens[None]).long().to(module.device)
            action, gen = module.act(state, self.stop_fn, self.max_procedure_steps)
            maze_state = codec.as_maze_state(tokens)
            step = None
            if gen is not None and int(gen.lengths[0]) > 0:
                step = gen.steps[0, int(gen.lengths[0]) - 1].cpu().numpy()
            img = Image.fromarray(render_grid(maze_state, step, scale))
            draw = ImageDraw.Draw(img)
            path.append(((o["pos"][0] + w / 2) * scale, (h / 2 - o["pos"][1]) * scale))  # pixels (x, y)
            if len(path) > 1:
                draw.line(path, fill=(20, 20, 20), width=2)
            x, y = path[-1]
            draw.ellipse([x - scale / 3, y - scale / 3, x + scale / 3, y + scale / 3], fill=(40, 90, 220),
                         outline=(255, 255, 255))
            draw.text((2, 1), f"decision {ep.decisions}", fill=(200, 30, 30))
            frames.append(np.asarray(img))
            ep.step(bins.decode(action.cpu().numpy().reshape(2)))
        ep.close()
        return np.stack(frames)
