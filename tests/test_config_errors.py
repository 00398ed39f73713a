"""A bad domain argument is one line naming the user's key, exit status 2, before any work."""

import pytest

from pc_lightning.cli import main
from pc_lightning.errors import ConfigError, at_least, config_error_line, dataclass_from, in_range

# (config, the bad argument, its value, what the line must say)
PROBES = [
    ("conf/maze.yaml", "size", "15", "3k+1"),
    ("conf/maze.yaml", "n_train", "0", ">= 1; got 0"),
    ("conf/maze.yaml", "heldout_size", "12", "3k+1"),
    ("conf/maze.yaml", "shortcut_prob", "1.5", "[0.0, 1.0]"),
    ("conf/maze.yaml", "batch_size", "0", ">= 1; got 0"),
    ("conf/minatar.yaml", "game", "pong", "unknown MinAtar game 'pong'"),
    ("conf/minatar.yaml", "procedure", "imagine", "must be one of search, flight"),
    ("conf/minatar.yaml", "n_train", "0", ">= 1; got 0"),
    ("conf/minatar.yaml", "sticky_action_prob", "2", "[0.0, 1.0]"),
    ("conf/minatar.yaml", "expert", "{simulation: 3}", "unknown setting 'simulation'"),
    ("conf/minatar.yaml", "shift", "{bricks: holy}", "got 'holy'"),
    ("conf/minatar.yaml", "shift", "{stiky_action_prob: 0.3}", "may set"),
    ("conf/sweep.yaml", "table", '{"size": 5}', "no room"),
    ("conf/sweep.yaml", "table", "{sizee: 20}", "unknown setting 'sizee'"),
    ("conf/sweep.yaml", "particles", "[5, 40]", "1 <= low <= high <= max_particles"),
    ("conf/sweep.yaml", "n_bins", "1", ">= 2; got 1"),
    ("conf/pointmaze.yaml", "size", "15", "3k+1"),
    ("conf/pointmaze.yaml", "heldout_size", "12", "3k+1"),
    ("conf/pointmaze.yaml", "n_train", "0", ">= 1; got 0"),
    ("conf/pointmaze.yaml", "train_episodes", "60", "must be <= 50"),
    ("conf/pointmaze.yaml", "force_bins", "1", ">= 2; got 1"),
    ("conf/pointmaze.yaml", "max_speed", "0", "must be > 0"),
    ("conf/pointmaze.yaml", "shortcut_prob", "-0.1", "[0.0, 1.0]"),
    ("conf/sweep.yaml", "train_episodes", "2", "must be 1: sweep plays one episode per table"),
    ("conf/minatar.yaml", "heldout_episodes", "3", "must be 1: minatar plays one episode per seed"),
    ("conf/maze.yaml", "n_train_envs", "-1", ">= 0; got -1"),
    ("conf/maze.yaml", "n_train_mazes", "3", "was renamed to data.init_args.n_train"),
    ("conf/pointmaze.yaml", "episodes_per_layout", "3", "was renamed to data.init_args.train_episodes"),
    ("conf/minatar.yaml", "train_eval_episodes", "3", "was renamed to data.init_args.n_train_envs"),
]


@pytest.mark.parametrize("config,arg,value,says", PROBES, ids=[f"{c.split('/')[-1]}:{a}" for c, a, _, _ in PROBES])
def test_a_bad_domain_argument_is_one_line_at_its_key(config, arg, value, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", config, f"--data.init_args.{arg}", value,
              "--data.init_args.data_dir", str(tmp_path / "data"),
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"pc-lightning: error: data.init_args.{arg}") and says in err[0], err[0]
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists(), "work started before the check"


def test_an_old_name_in_a_config_file_is_one_line_too(tmp_path, capsys):
    old = tmp_path / "old.yaml"
    old.write_text("data:\n  init_args:\n    n_heldout_configs: 3\n")
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", "conf/sweep.yaml", "--config", str(old)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == ("pc-lightning: error: data.init_args.n_heldout_configs: was renamed to "
                                               "data.init_args.n_heldout (the same name in every domain: "
                                               "docs/adding_a_domain.md)")


def test_the_console_script_exits_2_with_the_line(cli):
    proc = cli(["fit", "--config", "conf/maze.yaml", "--data.init_args.size", "15"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == ("pc-lightning: error: data.init_args.size: maze size must be "
                                                    "3k+1 with k >= 2 (7, 10, 13, 16, ..., 31); got 15")
    assert "Traceback" not in proc.stderr and "Namespace(" not in proc.stderr


def test_the_line_is_found_where_jsonargparse_quotes_it():
    quoted = ValueError("Does not validate against any of the Union subtypes\nErrors:\n"
                        "  - data.init_args.size: maze size must be 3k+1\n  - Expected a <class 'NoneType'>\n"
                        "Given value: Namespace(size=15)")
    assert config_error_line(quoted) == "data.init_args.size: maze size must be 3k+1"
    try:
        try:
            raise ConfigError("data.init_args.game", "unknown")
        except ConfigError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert config_error_line(outer) == "data.init_args.game: unknown"
    assert config_error_line(ValueError("something else: entirely")) is None


def test_the_checks():
    at_least(1, a=1, b=5)
    at_least(0, a=0)
    for bad in (0, -1, 1.5, True, "3", None):
        with pytest.raises(ConfigError, match=r"^data\.init_args\.n: must be an integer >= 1"):
            at_least(1, n=bad)
    in_range(0.0, 1.0, p=0.0, q=1)
    with pytest.raises(ConfigError, match=r"^data\.init_args\.table\.p: must be a number in \[0\.0, 1\.0\]"):
        in_range(0.0, 1.0, prefix="data.init_args.table", p=1.01)
    from pc_lightning.domains.sweep.env import SweepConfig

    assert dataclass_from(SweepConfig, {"size": 20}, "k").size == 20
    with pytest.raises(ConfigError, match=r"^k: unknown setting 'sise'; known: size, "):
        dataclass_from(SweepConfig, {"sise": 20}, "k")
