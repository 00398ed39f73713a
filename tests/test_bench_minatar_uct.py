"""The retired UCT expert (``bench/minatar_uct.py``), the expert table's baseline: it still
finds the one saving or scoring move where a position has one."""

import sys

from conftest import ROOT, freeway_one_step_from_scoring

sys.path.insert(0, str(ROOT / "bench"))

from minatar_uct import MCTS, MCTSConfig  # noqa: E402

from pc_lightning.domains.minatar.env import make_env, restore, snapshot  # noqa: E402


def test_uct_baseline_takes_the_scoring_step_in_freeway():
    """The UCT expert (the expert table's baseline). The chicken one row below the top, free
    to move, no car near: 'up' scores now and every other action scores later, so the search
    must choose 'up' (action 2)."""
    env = freeway_one_step_from_scoring()
    result = MCTS(MCTSConfig(simulations=64, horizon=10), env.minimal_action_set(), seed=0).search(env)
    assert result.action == 2
    assert result.pv[0].action == 2 and result.pv[0].value > 0.5


def test_uct_baseline_avoids_losing_the_ball_in_breakout():
    """The UCT expert. Ball falling toward the bottom-left corner, paddle far right: only
    moving left in time saves it (4 cells in 4 steps), so the search must choose 'left'."""
    env = make_env("breakout", seed=0, sticky_action_prob=0.0)
    game = env.env
    game.ball_x, game.ball_y, game.ball_dir, game.pos = 4, 5, 3, 5  # dir 3: down-left
    game.last_x, game.last_y = 5, 4
    snap = snapshot(env)
    for first, saved in [(3, False), (0, False), (1, True)]:  # then left until the ball lands
        restore(env, snap)
        outcomes = [env.act(a)[1] for a in [first, 1, 1, 1]]
        assert any(outcomes) != saved
    restore(env, snap)
    result = MCTS(MCTSConfig(simulations=128, horizon=10), env.minimal_action_set(), seed=0).search(env)
    assert result.action == 1  # 'l'
