"""UCT Monte-Carlo tree search on a copy of the MinAtar simulator: the expert before the
guided search (``pc_lightning.domains.minatar.search``), retired from the package and kept
here as the baseline of the expert table (``bench/minatar_expert.py``); its labels were
close to noise to any learner (docs/notes/2026-11-25-minatar-uct-expert.md).

The search runs on the environment it is given and leaves it as it found it. Inside the
search the game draws its randomness from the planner's own RNG (the real episode's RNG is
never consumed) and sticky actions are off. The tree is closed-loop: a node holds the
snapshot reached the first time its action was tried from its parent, so every node has
one imagined frame, which is what the procedure records.

A simulation descends by UCB1 (``Q + c * sqrt(ln N_parent / N_child)``, untried actions
first), expands one child, then rolls out with the rollout policy until ``horizon`` steps
from the root or a terminal state (a simulated terminal costs ``terminal_penalty``). Q is
the mean discounted return from taking the action at the parent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from minatar import Environment

from pc_lightning.domains.minatar.env import ACTION_NAMES, frame_tokens, restore, snapshot
from pc_lightning.domains.minatar.search import PVStep


@dataclass
class MCTSConfig:
    """Settings of the UCT expert.

    simulations: per decision. horizon: simulated steps from the root (tree + rollout).
    c: UCB1 exploration constant. discount: per step. terminal_penalty: subtracted when a
    simulation reaches a terminal state. rollout: action probabilities of the rollout
    policy by MinAtar action name (``{"u": 0.8, "n": 0.2}``); None = uniform over the
    game's minimal action set. pv_depth: steps of the principal variation recorded.
    """

    simulations: int = 128
    horizon: int = 20
    c: float = 1.0
    discount: float = 0.99
    terminal_penalty: float = 1.0
    rollout: dict[str, float] | None = None
    pv_depth: int = 4


#: Per game, the settings the UCT expert's data used (over :class:`MCTSConfig`'s defaults):
#: freeway's reward lies ~27 frames away, beyond a random rollout's reach, so its rollouts
#: lean upward over a longer horizon; Space Invaders simulates ~10x slower, so it searches
#: less; in Asterix a penalty of 1 for dying traded lives for gold.
UCT_GAME_DEFAULTS: dict[str, dict] = {
    "asterix": {"terminal_penalty": 10.0},
    "breakout": {},
    "freeway": {"simulations": 64, "horizon": 40, "rollout": {"u": 0.6, "n": 0.2, "d": 0.2}},
    "seaquest": {},
    "space_invaders": {"simulations": 48, "horizon": 12},
}


class Node:
    __slots__ = ("snap", "reward", "terminal", "children", "visits", "value_sum", "depth")

    def __init__(self, snap: dict, reward: float, terminal: bool, depth: int) -> None:
        self.snap = snap
        self.reward = reward  # reward of the transition into this node
        self.terminal = terminal
        self.children: dict[int, Node] = {}
        self.visits = 0
        self.value_sum = 0.0  # sum of discounted returns from the parent taking this node's action
        self.depth = depth

    @property
    def q(self) -> float:
        return self.value_sum / max(self.visits, 1)


@dataclass
class UCTResult:
    action: int
    pv: list[PVStep] = field(default_factory=list)
    root_visits: dict[int, int] = field(default_factory=dict)
    root_q: dict[int, float] = field(default_factory=dict)  # each root action's mean discounted return


class MCTS:
    """UCT search for one game; call :meth:`search` with the live environment."""

    def __init__(self, config: MCTSConfig, actions: list[int], seed: int = 0) -> None:
        self.cfg = config
        self.actions = list(actions)
        self.rng = np.random.RandomState(seed)  # the planner's RNG: game randomness inside the search
        if config.rollout:
            unknown = set(config.rollout) - set(ACTION_NAMES)
            if unknown:
                raise ValueError(f"rollout policy names unknown actions {sorted(unknown)}; use {ACTION_NAMES}")
            probs = np.array([config.rollout.get(ACTION_NAMES[a], 0.0) for a in self.actions], dtype=np.float64)
            if probs.sum() <= 0:
                raise ValueError(f"rollout policy {config.rollout} gives no weight to the game's actions")
            self.rollout_cdf = np.cumsum(probs / probs.sum())
        else:
            self.rollout_cdf = np.arange(1, len(self.actions) + 1) / len(self.actions)

    def _rollout_action(self) -> int:
        return self.actions[min(int(np.searchsorted(self.rollout_cdf, self.rng.rand(), side="right")),
                                len(self.actions) - 1)]

    def _select(self, node: Node) -> int:
        for a in self.actions:
            if a not in node.children:
                return a
        log_n = math.log(node.visits)
        best, best_score = self.actions[0], -math.inf
        for a in self.actions:
            ch = node.children[a]
            score = ch.q + self.cfg.c * math.sqrt(log_n / ch.visits)
            if score > best_score:
                best, best_score = a, score
        return best

    def _most_visited(self, node: Node) -> int:
        """The child with the most visits (ties: higher Q, then the earlier action)."""
        return max((a for a in self.actions if a in node.children),
                   key=lambda a: (node.children[a].visits, node.children[a].q))

    def search(self, env: Environment) -> UCTResult:
        """Plan from ``env``'s current state; ``env`` is restored afterwards."""
        cfg = self.cfg
        game = env.env
        real_random = game.random
        original = snapshot(env)
        game.random = self.rng
        try:
            root = Node(original, 0.0, bool(game.terminal), 0)
            for _ in range(cfg.simulations):
                self._simulate(env, root)
            best = self._most_visited(root)
            pv = []
            node = root
            while len(pv) < cfg.pv_depth and node.children:
                a = best if node is root else self._most_visited(node)
                node = node.children[a]
                restore(env, node.snap)
                pv.append(PVStep(a, frame_tokens(game.state()), node.q, node.visits))
            assert not pv or pv[0].action == best
            return UCTResult(best, pv, {a: ch.visits for a, ch in root.children.items()},
                                {a: ch.q for a, ch in root.children.items()})
        finally:
            restore(env, original)
            game.random = real_random

    def _simulate(self, env: Environment, root: Node) -> None:
        cfg = self.cfg
        game = env.env
        path = [root]
        node = root
        # selection: descend through fully expanded nodes
        while not node.terminal and node.depth < cfg.horizon:
            a = self._select(node)
            if a in node.children:
                node = node.children[a]
                path.append(node)
                continue
            restore(env, node.snap)
            r, terminal = game.act(a)
            child = Node(snapshot(env), float(r), bool(terminal), node.depth + 1)
            node.children[a] = child
            node = child
            path.append(node)
            break
        # rollout from the new (or terminal / horizon) node; env holds its state if just expanded
        ret = 0.0
        if node.terminal:
            ret = -cfg.terminal_penalty
        elif node.depth < cfg.horizon:
            if len(path) < 2 or path[-1].visits > 0:  # env is not at this node's state
                restore(env, node.snap)
            g = 1.0
            for _ in range(cfg.horizon - node.depth):
                a = self._rollout_action()
                r, terminal = game.act(a)
                ret += g * r
                if terminal:
                    ret -= g * cfg.terminal_penalty
                    break
                g *= cfg.discount
        # backup: each node's value is the discounted return from its parent's action on
        node.visits += 1
        node.value_sum += node.reward + cfg.discount * ret if node is not root else ret
        value = node.reward + cfg.discount * ret
        for parent in reversed(path[:-1]):
            parent.visits += 1
            if parent is root:
                break
            value = parent.reward + cfg.discount * value
            parent.value_sum += value
