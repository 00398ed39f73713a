"""MinAtarDataModule: expert episodes on training seeds (the guided search, or breakout's
flight expert), rollout suites on unseen seeds and on a shifted game configuration."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
from minatar import Environment

from pc_lightning.data import ProcedureDataModule, Splits
from pc_lightning.domains.minatar.codec import H, W, Codec
from pc_lightning.domains.minatar.env import N_ACTIONS, check_game, frame_tokens, make_env
from pc_lightning.domains.minatar.flight import BrickLayout, plan
from pc_lightning.domains.minatar.flight_codec import FlightCodec
from pc_lightning.domains.minatar.flight_suite import FlightSuite
from pc_lightning.domains.minatar.network import NetConfig, get_net, load_net, net_path
from pc_lightning.domains.minatar.search import GuidedSearch, SearchConfig
from pc_lightning.domains.minatar.suite import MinAtarSuite
from pc_lightning.errors import ConfigError, at_least, dataclass_from, in_range
from pc_lightning.spec import TokenSpec

#: Per game: the network's training budget and settings that differ from
#: :class:`NetConfig`'s defaults, the search's settings over :class:`SearchConfig`'s, and the
#: shifted configuration of the ``heldout_shift`` suite. Why seaquest's discount, c_scale and
#: the longer budgets: ``docs/domains/minatar.md`` (the network, the expert).
GAME_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "asterix": {"network": {}, "expert": {}, "shift": {"difficulty_ramping": True}},
    "breakout": {"network": {"total_steps": 15_000_000}, "expert": {}, "shift": {"sticky_action_prob": 0.3}},
    "freeway": {"network": {}, "expert": {}, "shift": {"sticky_action_prob": 0.3}},
    "seaquest": {"network": {"gamma": 0.999, "total_steps": 15_000_000}, "expert": {"c_scale": 0.03},
                 "shift": {"difficulty_ramping": True}},
    "space_invaders": {"network": {}, "expert": {}, "shift": {"difficulty_ramping": True, "max_episode_steps": 1000}},
}
#: What a ``shift`` may change. ``max_episode_steps`` lets a shift run past the training
#: horizon: space_invaders speeds its aliens up only as waves are cleared, so within 400
#: decisions ramping barely differs from the training game (``docs/domains/minatar.md``, suites).
SHIFT_KEYS = ("sticky_action_prob", "difficulty_ramping", "max_episode_steps", "bricks")
#: The procedures: ``search`` (the guided search, every game) and ``flight`` (breakout: the
#: ball's imagined flight, :mod:`.flight`), with the flight's default shift, a brick layout
#: never trained on.
PROCEDURES = ("search", "flight")
FLIGHT_SHIFT: dict[str, Any] = {"bricks": "holes"}


Decide = Callable[[Environment], tuple[np.ndarray, np.ndarray, int]]


def record_episode(env: Environment, decide: Decide, max_steps: int, group: int) -> dict[str, Any]:
    """Play ``env`` with an expert until the game ends or ``max_steps`` decisions; ``decide(env)``
    gives the state block, the procedure and the action. Every state's record and the return."""
    states, procedures, actions = [], [], []
    ret = 0.0
    for _ in range(max_steps):
        state, procedure, action = decide(env)
        states.append(state)
        procedures.append(procedure)
        actions.append(action)
        r, terminal = env.act(action)
        ret += float(r)
        if terminal:
            break
    return {"states": states, "procedures": procedures, "actions": actions, "groups": [group] * len(actions),
            "return": ret, "length": len(actions)}


def expert_episode(game: str, seed: int, group: int, sticky_action_prob: float, difficulty_ramping: bool,
                   max_steps: int, expert: dict[str, Any], net: str) -> dict[str, Any]:
    """One episode of the guided-search expert: every state with its procedure and action, and the return."""
    import torch

    torch.set_num_threads(1)  # one search per process
    codec = Codec(game)
    env = make_env(game, seed, sticky_action_prob, difficulty_ramping)
    planner = GuidedSearch(SearchConfig(**expert), env.minimal_action_set(), load_net(Path(net)).evaluate)

    def decide(env: Environment) -> tuple[np.ndarray, np.ndarray, int]:
        frame = frame_tokens(env.state())
        result = planner.search(env)
        return codec.encode_state(frame), codec.encode_procedure(result, frame), result.action

    return record_episode(env, decide, max_steps, group)


def flight_episode(seed: int, group: int, sticky_action_prob: float, difficulty_ramping: bool,
                   max_steps: int) -> dict[str, Any]:
    """One episode of breakout's flight expert (standard bricks): every state with its
    procedure and action, and the return."""
    codec = FlightCodec()
    scratch = Environment("breakout", sticky_action_prob=0.0)

    def decide(env: Environment) -> tuple[np.ndarray, np.ndarray, int]:
        flight = plan(env, scratch)
        return codec.encode_state(flight.frames[0]), codec.encode_procedure(flight), flight.action

    return record_episode(make_env("breakout", seed, sticky_action_prob, difficulty_ramping), decide, max_steps, group)


def episode(procedure: str, game: str, seed: int, group: int, sticky_action_prob: float, difficulty_ramping: bool,
            max_steps: int, expert: dict[str, Any], net: str) -> dict[str, Any]:
    """One expert episode of ``procedure`` (a worker job of :meth:`MinAtarDataModule.generate`)."""
    common = dict(seed=seed, group=group, sticky_action_prob=sticky_action_prob,
                  difficulty_ramping=difficulty_ramping, max_steps=max_steps)
    if procedure == "flight":
        return flight_episode(**common)
    return expert_episode(game=game, expert=expert, net=net, **common)


class MinAtarDataModule(ProcedureDataModule):
    """Procedure cloning of a guided-search expert on one MinAtar game.

    Args:
        game: asterix | breakout | freeway | seaquest | space_invaders.
        procedure: ``search`` (the guided search's verdicts, decision and PV; every game) or
            ``flight`` (breakout only: the ball's flight imagined on the simulator frame by
            frame, then the move towards where the paddle returns it; no network). With
            ``flight`` every learner's state shows the ball's direction and strike flag,
            which MinAtar's frame hides (:mod:`.flight`), and the default shift is a brick
            layout never trained on (``holes``).
        max_episode_steps: decisions per episode, for the expert's data and for evaluation.
        sticky_action_prob, difficulty_ramping: the training configuration (MinAtar's sticky
            actions, 0.1 by default; ramping off).
        shift: the ``heldout_shift`` suite's changes to that configuration (default: per game,
            :data:`GAME_DEFAULTS`): ``sticky_action_prob``, ``difficulty_ramping``, and
            ``max_episode_steps`` (that suite's horizon; where it differs from the training
            episodes' it reports no ``return_frac_expert``), and in breakout ``bricks``: a
            layout family (``holes``, ``thick``, ``random``) or a dict of
            :class:`~.flight.BrickLayout`'s fields (``family``, ``rows``, ``density``,
            ``bricks``: an explicit 10 x 10 0/1 map). Flight suites score
            ``return_frac_expert`` against the expert on the same episodes.
        expert: search settings over the game's defaults (see :class:`SearchConfig`).
        network: the policy/value network's PPO settings over the game's defaults (see
            :class:`NetConfig`; ``total_steps`` is its training budget). It is trained once
            and cached in ``data_dir`` (:mod:`.network`); the search uses it as prior and value.
        action_weight, frame_weight: loss weights of the cells the decision rests on (score
            bins and actions, 50) and of each frame cell (1); the rest of row 10 weighs 5
            (:meth:`Codec.cell_weights`). ``frame_weight: 0`` clones the scores and actions
            but not the frames: an ablation of what the frames add. With ``flight``: row 10
            (the block's kind and the move field) weighs ``action_weight`` per cell, a frame
            cell ``frame_weight`` (:meth:`.flight_codec.FlightCodec.spec`).
        Others (the splits' sizes, ``seed``, ``workers``, the loaders'): see
        :class:`~pc_lightning.data.ProcedureDataModule`. An environment is a seed, one
        episode each. The defaults: 128 expert episodes (every decision is a record), 1 for
        validation; suites of 8 validation seeds (the checkpoint's choice), 16 held-out seeds
        in each held-out suite (the test set: ``heldout``, the training configuration;
        ``heldout_shift``, shifted) and the first 4 training seeds.
    """

    domain = "minatar"
    generator_version = "8"  # 3: PV steps carry their depth; 4: a block holds a frame and the action from it;
    # 5: the state block is the 10 x 10 frame alone (steps keep their 11 x 10); 6: the guided search,
    # root blocks then the PV; 7: binned scores decide, the running best shifted one block; 8: every root
    # action's score bin in one block, then the decision, then the PV
    selection_metric = "return"
    n_probes = 8  # a search probe costs a search
    default_splits = Splits(n_train=128, n_val=1, n_val_envs=8, n_heldout=16, n_train_envs=4)
    episodes_per_environment = False
    shifted = True
    environment_name = "seed"
    expert_records = staticmethod(episode)

    def __init__(self, game: str = "breakout", procedure: str = "search", max_episode_steps: int = 400,
                 sticky_action_prob: float = 0.1, difficulty_ramping: bool = False,
                 shift: dict[str, Any] | None = None, expert: dict[str, Any] | None = None,
                 network: dict[str, Any] | None = None, action_weight: float = 50.0, frame_weight: float = 1.0,
                 workers: int = 2, chunk_blocks: int = 8, batch_size: int = 128, **kwargs: Any) -> None:
        super().__init__(workers=workers, chunk_blocks=chunk_blocks, batch_size=batch_size, **kwargs)
        self.game = check_game(game)
        if procedure not in PROCEDURES:
            raise ConfigError("data.init_args.procedure", f"must be one of {', '.join(PROCEDURES)}; got {procedure!r}")
        if procedure == "flight" and game != "breakout":
            raise ConfigError("data.init_args.procedure", f"flight is breakout's; got game {game!r}")
        self.procedure = procedure
        in_range(0.0, math.inf, action_weight=action_weight, frame_weight=frame_weight)
        at_least(1, max_episode_steps=max_episode_steps)
        in_range(0.0, 1.0, sticky_action_prob=sticky_action_prob)
        self.action_weight, self.frame_weight = action_weight, frame_weight
        self.codec = Codec(game)
        self.max_episode_steps = max_episode_steps
        self.sticky_action_prob = sticky_action_prob
        self.difficulty_ramping = difficulty_ramping
        default_shift = FLIGHT_SHIFT if procedure == "flight" else GAME_DEFAULTS[game]["shift"]
        self.shift = dict(default_shift if shift is None else shift)
        unknown = set(self.shift) - set(SHIFT_KEYS)
        if unknown:
            raise ConfigError("data.init_args.shift", f"may set {', '.join(SHIFT_KEYS)}, not {sorted(unknown)}")
        if "bricks" in self.shift and game != "breakout":
            raise ConfigError("data.init_args.shift.bricks", f"is a breakout layout; got game {game!r}")
        self.bricks = BrickLayout.parse(self.shift["bricks"]) if "bricks" in self.shift else None
        self.expert = asdict(dataclass_from(SearchConfig, {**GAME_DEFAULTS[game]["expert"], **(expert or {})},
                                            "data.init_args.expert"))
        self.network = dataclass_from(NetConfig, {**GAME_DEFAULTS[game]["network"], **(network or {}),
                                                  "sticky_action_prob": sticky_action_prob,
                                                  "difficulty_ramping": difficulty_ramping}, "data.init_args.network")

    @property
    def spec(self) -> TokenSpec:
        if self.procedure == "flight":
            return FlightCodec().spec(self.action_weight, self.frame_weight)
        weights = self.codec.cell_weights(self.action_weight, frame=self.frame_weight)
        return TokenSpec(self.codec.state_vocab, self.codec.step_vocab, N_ACTIONS, step_cell_weights=weights,
                         step_bits=self.codec.n_channels, step_shape=[H, W])

    def generator_config(self, split: str) -> dict:
        if self.procedure == "flight":
            return {"procedure": "flight", "layout": 2, "game": self.game,
                    "seeds": self.seeds(split), "max_steps": self.max_episode_steps, "sticky": self.sticky_action_prob,
                    "ramping": self.difficulty_ramping}
        return {"game": self.game, "seeds": self.seeds(split),
                "max_steps": self.max_episode_steps, "sticky": self.sticky_action_prob,
                "ramping": self.difficulty_ramping, "expert": self.expert, "net": self.network.digest(self.game)}

    def net_path(self) -> Path:
        """The search's network, trained and cached first if missing."""
        path = net_path(self.game, self.network, self.data_dir)
        if not path.is_file():
            get_net(self.game, self.network, self.data_dir)
        return path

    @property
    def expert_name(self) -> str:
        return f"{self.procedure} expert, {self.game}"

    def expert_job(self, seed: int, group: int, episodes: int) -> dict[str, Any]:
        net = "" if self.procedure == "flight" else str(self.net_path())
        return dict(procedure=self.procedure, game=self.game, seed=seed, group=group,
                    sticky_action_prob=self.sticky_action_prob, difficulty_ramping=self.difficulty_ramping,
                    max_steps=self.max_episode_steps, expert=self.expert, net=net)

    def progress(self, part: dict[str, Any]) -> dict[str, Any]:
        return {"ret": part["return"], "steps": part["length"]}

    def expert_meta(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        returns = [p["return"] for p in parts]
        return {"game": self.game, "expert_return": float(np.mean(returns)),
                "expert_returns": [float(r) for r in returns], "episode_lengths": [int(p["length"]) for p in parts]}

    def expert_return(self) -> float | None:
        """The expert's mean return over the training episodes."""
        if "train" not in self.records:
            self.setup()
        return self.records["train"].meta.get("expert_return")

    def make_suite(self, name: str, seeds: list[int], episodes: int) -> MinAtarSuite | FlightSuite:
        """A suite on ``seeds``: the training configuration, or the shifted one for ``heldout_shift``."""
        train_cfg = dict(sticky_action_prob=self.sticky_action_prob, difficulty_ramping=self.difficulty_ramping)
        shifted = {**train_cfg, **{k: v for k, v in self.shift.items() if k not in ("max_episode_steps", "bricks")}}
        horizon = self.shift.get("max_episode_steps", self.max_episode_steps) if name == "heldout_shift" \
            else self.max_episode_steps
        cfg = shifted if name == "heldout_shift" else train_cfg
        layout = self.bricks if name == "heldout_shift" else None
        if self.procedure == "flight":  # each flight suite scores against the expert on its own episodes
            return FlightSuite(seeds, **cfg, max_steps=horizon, layout=layout)
        # a longer (or shorter) horizon than the training episodes': no fraction of their return
        expert_return = self.expert_return() if horizon == self.max_episode_steps else None
        return MinAtarSuite(seeds=seeds, game=self.game, max_steps=horizon, expert=self.expert,
                            net=str(self.net_path()), expert_return=expert_return, layout=layout, **cfg)
