import os
import subprocess
from pathlib import Path

import pytest

from pc_lightning.study.runner import cli_command

ROOT = Path(__file__).resolve().parents[1]

#: Overrides that shrink conf/maze*.yaml to a seconds-long run on 7x7 mazes.
TINY = [
    "--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.max_time", "null",
    "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1",
    "--model.d_model", "16", "--model.n_heads", "2", "--model.d_ff", "32",
    "--data.init_args.size", "7", "--data.init_args.n_train", "2", "--data.init_args.train_episodes", "2",
    "--data.init_args.n_val", "1", "--data.init_args.val_episodes", "1",
    "--data.init_args.n_val_envs", "2", "--data.init_args.val_envs_episodes", "2",
    "--data.init_args.n_heldout", "2", "--data.init_args.heldout_episodes", "2",
    "--data.init_args.train_envs_episodes", "1", "--data.init_args.batch_size", "4",
]


def run_cli(args: list[str], tmp_path: Path, timeout: int = 300, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    """Run ``pc-lightning`` in a subprocess (so DDP never re-launches pytest), data and logs in
    tmp_path. The installed console script is used where there is one: its exit status is
    what a user's shell sees."""
    cmd = [*cli_command(), *args,
           "--data.init_args.data_dir", str(tmp_path / "data"),
           "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]
    # tests/ on the path: a test may add one of its own callbacks (tests/killer.py)
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])),
           **(env or {})}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-8000:])
    return proc


@pytest.fixture
def cli(tmp_path):
    return lambda args, **kw: run_cli(args, tmp_path, **kw)


def pytest_collection_modifyitems(config, items):
    """Every test that runs the command line in a subprocess (the ``cli`` fixture) is ``slow``,
    beside the ones marked by hand (fits, studies, DDP): ``python -m pytest -m "not slow"``
    is the fast subset."""
    for item in items:
        if "cli" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def freeway_one_step_from_scoring():
    """A freeway game whose chicken is one row below the top, free to move, every car parked
    far from its column: 'up' (action 2) scores now and every other action later (asserted).
    Returns the environment, restored to that position."""
    from pc_lightning.domains.minatar.env import make_env, restore, snapshot

    env = make_env("freeway", seed=0, sticky_action_prob=0.0)
    game = env.env
    game.pos, game.move_timer = 1, 0
    for car in game.cars:  # park every car far from the chicken's column (x=4), moving slowly
        car[0] = 9
    snap = snapshot(env)
    rewards = {}
    for a in env.minimal_action_set():
        restore(env, snap)
        rewards[a] = env.act(a)[0]
    assert rewards[2] == 1 and all(r == 0 for a, r in rewards.items() if a != 2)
    restore(env, snap)
    return env
