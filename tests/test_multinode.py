"""Two nodes x one process over the loopback interface (torchrun, gloo): the held-out
numbers of a multi-node test run are those of one process on the same evaluation set."""

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, TINY, run_cli


def _table(text: str) -> dict[str, str]:
    """The evaluation table's rows (suite -> its printed numbers), from a run's output."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^(val_envs|heldout|train_envs)\s+(.*)$", line.strip())
        if m:
            rows[m.group(1)] = m.group(2).split()
    return rows


@pytest.mark.slow
def test_two_nodes_on_loopback_match_one_process(tmp_path):
    assert run_cli(["fit", "--config", "conf/maze.yaml", *TINY], tmp_path).returncode == 0
    ckpt = next((tmp_path / "runs").rglob("best.ckpt"))
    # 4 held-out mazes x 2 episodes: each node rolls out half
    common = ["test", "--config", "conf/maze.yaml", *TINY, "--data.init_args.n_heldout", "4",
              "--ckpt_path", str(ckpt), "--data.init_args.data_dir", str(tmp_path / "data"),
              "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "root")]  # not the repo
    one = subprocess.run([sys.executable, "-m", "pc_lightning.cli", *common, "--trainer.devices", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "GLOO_SOCKET_IFNAME": "lo"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                "--master_addr", "127.0.0.1", "--master_port", "29531"]
    nodes = [subprocess.Popen([*torchrun, "--node_rank", str(r), "-m", "pc_lightning.cli", *common,
                               "--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for r in (0, 1)]
    outs = [p.communicate(timeout=300) for p in nodes]
    assert all(p.returncode == 0 for p in nodes), outs[0][1][-3000:] + outs[1][1][-3000:]
    multi, single = _table(outs[0][0] + outs[0][1]), _table(one.stdout + one.stderr)
    assert {"heldout", "val_envs"} <= set(single) and {"heldout", "val_envs"} <= set(multi)
    # every statistic but episodes/s (a speed) is the same number
    header = next(l for l in (one.stdout + one.stderr).splitlines() if "success_rate" in l and "path_ratio" in l)
    names = header.split()
    compared = []
    for suite in ("heldout", "val_envs", "train_envs"):
        for name, a, b in zip(names, multi[suite], single[suite]):
            if name != "episodes_per_s":
                assert a == b, (suite, name, a, b)
                compared.append(float(a))
    assert any(v not in (0.0, 1.0) and v == v for v in compared), "the comparison must not be all 0, 1 or NaN"
