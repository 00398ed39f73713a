"""Search guided by a learned prior and value, with sequential halving at the root.

The design follows Gumbel MuZero (Danihelka et al., ICLR 2022; DeepMind's mctx,
``gumbel_muzero_policy``), read as a reference, not depended on, and made deterministic:
no Gumbel noise, so the chosen action is a function of the state alone.

- The simulator is the game itself (MinAtar, through the snapshots of :mod:`.env`): a node
  holds the snapshot reached the first time its action was tried from its parent (the
  tree is closed-loop), so every node has one imagined frame. Inside the search sticky
  actions are off and the game's randomness comes from the planner's RNG, seeded by the
  depth before every expansion: the same state gives the same tree and the same action, and
  sibling actions meet the same random spawns (common random numbers), so their values
  differ by what the actions do, not by the luck of the draw.
- Leaves are valued by the network; a transition into a terminal state is worth its reward.
  ``Q(s, a)`` is the mean of ``r + discount * G`` over the simulations through the child.
- Root: the ``max_considered`` actions of highest prior are visited in phases of sequential
  halving; after each phase the better half by ``logit(a) + sigma(Q(a))`` stays. After the
  last simulation every root action's score is binned relative to the best
  (``score_bins - 1`` for the best, one bin less per ``score_bin`` nats below it), and the
  action is the first root action, in the game's order, in the top bin. mctx takes the last
  survivor; this rule is a function of the bins alone, which the procedure shows
  (:mod:`.codec`), so a reader of the procedure can reach the decision without the hidden
  scores.
- Interior nodes: the deterministic selection of Gumbel MuZero, the action that most
  raises the visit distribution towards the improved policy
  ``softmax(logit + sigma(completed Q))``; unvisited actions' Q is completed by the mixed
  value. ``sigma(q) = (c_visit + max visits) * c_scale * q`` on Q rescaled to [0, 1]
  over the node's children (by at least ``min_range``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from minatar import Environment

from pc_lightning.domains.minatar.env import frame_tokens, restore, snapshot

#: (B, 10, 10, C) observations -> log-priors (B, A) over the search's actions, values (B,).
Evaluate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class SearchConfig:
    """Settings of the guided search.

    simulations: per decision. max_considered: root actions in sequential halving (None:
    all of the game's actions, so each has an imagined next frame and a value). c_visit,
    c_scale: sigma's constants (mctx's defaults 50 and 1; Q is rescaled to [0, 1]). Here
    c_scale is 0.1: at 1 the search overrode its prior on most states (asterix: it agreed
    with the network's greedy action on 35% of them) and its labels were close to noise to
    BC; at 0.1 it agrees on ~93% and departs where the values differ clearly.
    min_range: the smallest spread of Q (in reward units) that rescaling stretches to
    [0, 1]: actions whose values differ by less stay near-equal, and the prior decides
    between them (min-max rescaling alone turns a value network's tiny differences into a
    full-scale choice).
    discount: per step. max_depth: a simulation stops there and takes the network's value.
    pv_depth: steps of the principal variation recorded. seed: the planner's RNG, reseeded
    at every search.
    score_bin, score_bins: the decision's resolution. A root action's score bin is
    ``max(0, score_bins - 1 - floor((best score - its score) / score_bin))``; the action is
    the first in the top bin, so actions whose scores are within ``score_bin`` nats of the
    best tie and the game's order breaks the tie. ``score_bins`` sets only what the
    procedure shows, never the action: 2 (in the top bin or not) is what the decision reads;
    finer bins make a learner guess more than the decision needs (``docs/domains/minatar.md``).
    """

    simulations: int = 32
    max_considered: int | None = None
    c_visit: float = 50.0
    c_scale: float = 0.1
    min_range: float = 1.0
    discount: float = 0.99
    max_depth: int = 12
    pv_depth: int = 2
    seed: int = 0
    score_bin: float = 0.25
    score_bins: int = 2


class Node:
    __slots__ = ("snap", "obs", "reward", "terminal", "children", "visits", "value_sum", "logp",
                 "value", "depth")

    def __init__(self, snap: dict, obs: np.ndarray, reward: float, terminal: bool, depth: int) -> None:
        self.snap = snap
        self.obs = obs  # (10, 10, C) bool, the frame the node's state shows
        self.reward = reward  # reward of the transition into this node
        self.terminal = terminal
        self.children: dict[int, Node] = {}  # by index into the search's actions
        self.visits = 0
        self.value_sum = 0.0  # sum of r + discount * G over simulations through this node
        self.logp: np.ndarray | None = None  # (A,) the network's log-prior at this node
        self.value = 0.0  # the network's value of this node's state (0 if terminal)
        self.depth = depth

    @property
    def q(self) -> float:
        return self.value_sum / max(self.visits, 1)


@dataclass
class RootAction:
    """What the search found for one root action: its imagined next frame, Q and visits."""

    action: int  # MinAtar action id
    frame: np.ndarray | None  # (10, 10) frame tokens after it, None if never tried
    value: float  # Q(root, action); the completed Q (mixed value) if never tried
    visits: int
    prior: float
    score: float = 0.0  # logit + sigma(completed Q): the search's ranking of the root actions
    scaled: float = 0.0  # completed Q rescaled to [0, 1] over the root actions (what sigma reads)
    bin: int = 0  # the score's bin: score_bins - 1 for the best, one less per score_bin nats below


@dataclass
class PVStep:
    """One step of the principal variation: the action, the frame it led to, the node's Q."""

    action: int
    frame: np.ndarray  # (10, 10) int64 frame tokens
    value: float
    visits: int


@dataclass
class SearchResult:
    action: int  # MinAtar action id
    root: list[RootAction] = field(default_factory=list)  # in the order of the game's actions
    pv: list[PVStep] = field(default_factory=list)
    root_value: float = 0.0  # the network's value of the root state


class GuidedSearch:
    """Sequential-halving search with a prior and a value; :meth:`search` on the live env."""

    def __init__(self, config: SearchConfig, actions: list[int], evaluate: Evaluate) -> None:
        self.cfg = config
        self.actions = list(actions)
        self.evaluate = evaluate
        self.rng = np.random.RandomState(config.seed)

    # ------------------------------------------------------------------ scores
    def _expand(self, node: Node) -> None:
        """Evaluate ``node`` with the network (prior and value)."""
        logp, value = self.evaluate(node.obs[None])
        node.logp = logp[0]
        node.value = 0.0 if node.terminal else float(value[0])

    def _completed_q(self, node: Node) -> np.ndarray:
        """(A,) Q of visited children, the mixed value for the others (Gumbel MuZero's completion)."""
        q = np.zeros(len(self.actions))
        visited = np.zeros(len(self.actions), dtype=bool)
        for i, ch in node.children.items():
            if ch.visits:
                q[i], visited[i] = ch.q, True
        if visited.any():
            prior = np.exp(node.logp)
            n = sum(ch.visits for ch in node.children.values())
            weighted = (prior[visited] * q[visited]).sum() / max(prior[visited].sum(), 1e-12)
            mixed = (node.value + n * weighted) / (1 + n)
        else:
            mixed = node.value
        q[~visited] = mixed
        return q

    def _scaled(self, q: np.ndarray) -> np.ndarray:
        """Q rescaled over a node's actions: (q - min) / max(max - min, min_range), in [0, 1]."""
        lo, hi = q.min(), q.max()
        return (q - lo) / max(hi - lo, self.cfg.min_range)

    def _sigma(self, node: Node, q: np.ndarray) -> np.ndarray:
        scaled = self._scaled(q)
        max_visits = max((ch.visits for ch in node.children.values()), default=0)
        return (self.cfg.c_visit + max_visits) * self.cfg.c_scale * scaled

    def _interior_action(self, node: Node) -> int:
        score = node.logp + self._sigma(node, self._completed_q(node))
        improved = np.exp(score - score.max())
        improved /= improved.sum()
        visits = np.array([node.children[i].visits if i in node.children else 0 for i in range(len(self.actions))])
        return int(np.argmax(improved - visits / (1 + visits.sum())))

    # ------------------------------------------------------------------ search
    def search(self, env: Environment) -> SearchResult:
        """Plan from ``env``'s current state; ``env`` is restored afterwards."""
        cfg = self.cfg
        game = env.env
        real_random = game.random
        original = snapshot(env)
        # the game's own step (below the sticky-action wrapper) is what is simulated; its RNG is
        # seeded before each expansion, the only place the game draws
        game.random = self.rng
        try:
            root = Node(original, env.state(), 0.0, bool(game.terminal), 0)
            self._expand(root)
            n_act = len(self.actions)
            m = n_act if cfg.max_considered is None else max(1, min(cfg.max_considered, n_act))
            remaining = [int(i) for i in np.argsort(-root.logp, kind="stable")[:m]]
            phases = max(1, math.ceil(math.log2(m))) if m > 1 else 1
            budget = cfg.simulations
            while budget > 0:
                per_action = max(1, cfg.simulations // (phases * len(remaining)))
                for i in remaining:
                    for _ in range(per_action):
                        if budget <= 0:
                            break
                        self._simulate(env, root, i)
                        budget -= 1
                if len(remaining) == 1:
                    if budget > 0:  # the rest of the budget deepens the chosen action
                        continue
                    break
                remaining = self._halve(root, remaining)
            return self._result(env, root)
        finally:
            restore(env, original)
            game.random = real_random

    def _root_scores(self, root: Node) -> np.ndarray:
        return root.logp + self._sigma(root, self._completed_q(root))

    def _halve(self, root: Node, remaining: list[int]) -> list[int]:
        score = self._root_scores(root)
        ranked = sorted(remaining, key=lambda i: (-score[i], i))  # ties: the earlier action
        return ranked[: max(1, math.ceil(len(remaining) / 2))]

    def _bins(self, score: np.ndarray) -> np.ndarray:
        """(A,) root scores -> their bins, relative to the best (the best is ``score_bins - 1``)."""
        below = np.floor((score.max() - score) / self.cfg.score_bin)
        return np.maximum(0, self.cfg.score_bins - 1 - below).astype(np.int64)

    def _simulate(self, env: Environment, root: Node, root_i: int) -> None:
        cfg = self.cfg
        game = env.env
        path = [root]
        node, i = root, root_i
        while True:
            child = node.children.get(i)
            if child is None:
                restore(env, node.snap)
                self.rng.seed(cfg.seed + node.depth)  # common random numbers: siblings see the same spawns
                r, terminal = game.act(self.actions[i])
                child = Node(snapshot(env), env.state(), float(r), bool(terminal), node.depth + 1)
                self._expand(child)
                node.children[i] = child
                path.append(child)
                break
            path.append(child)
            node = child
            if node.terminal or node.depth >= cfg.max_depth:
                break
            i = self._interior_action(node)
        # backup: G is the leaf's value, then r + discount * G up the path
        g = path[-1].value
        for n in reversed(path[1:]):
            g = n.reward + cfg.discount * g
            n.value_sum += g
            n.visits += 1
        root.visits += 1

    def _result(self, env: Environment, root: Node) -> SearchResult:
        """The root actions' findings and the decision: the first root action (in the game's
        order) in the top score bin, the improved policy's mode up to ``score_bin`` nats, which a
        reader of the binned scores reaches."""
        q = self._completed_q(root)
        scaled = self._scaled(q)
        score = self._root_scores(root)
        bins = self._bins(score)
        best_i = int(np.argmax(bins))  # argmax takes the first of equal bins
        prior = np.exp(root.logp)
        roots = []
        for i, a in enumerate(self.actions):
            ch = root.children.get(i)
            frame = frame_tokens(ch.obs) if ch is not None else None
            roots.append(RootAction(a, frame, float(q[i]), ch.visits if ch is not None else 0, float(prior[i]),
                                    float(score[i]), float(scaled[i]), int(bins[i])))
        pv, node, i = [], root, best_i
        while len(pv) < self.cfg.pv_depth and i is not None and i in node.children:
            node = node.children[i]
            pv.append(PVStep(self.actions[i], frame_tokens(node.obs), node.q, node.visits))
            visited = [(ch.visits, ch.q, -j) for j, ch in node.children.items() if ch.visits]
            i = -max(visited)[2] if visited else None
        return SearchResult(self.actions[best_i], roots, pv, float(root.value))
