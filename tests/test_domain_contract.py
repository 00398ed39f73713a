"""The contract between the core DataModule and a domain: one name per split size in every
domain, the sizes' rules, and the data every shipped config generates pinned by its cache name
(a hash of everything that determines it), so that a change to the core that is meant to
leave the data as it was shows here when it does not."""

import pytest
import yaml

from pc_lightning.data import ProcedureDataModule, Splits
from pc_lightning.data.datamodule import SEED_BASE
from pc_lightning.domains.maze import MazeDataModule
from pc_lightning.domains.minatar import MinAtarDataModule
from pc_lightning.domains.pointmaze import PointMazeDataModule
from pc_lightning.domains.sweep import SweepDataModule
from pc_lightning.errors import ConfigError

DOMAINS = [MazeDataModule, MinAtarDataModule, PointMazeDataModule, SweepDataModule]


def shipped(config: str, *overlays: str) -> dict:
    """The data arguments of a shipped config (and its overlays' dotted keys)."""
    args = dict(yaml.safe_load(open(config))["data"]["init_args"])
    for path in overlays:
        for key, value in yaml.safe_load(open(path)).items():
            if key.startswith("data.init_args."):
                args[key.removeprefix("data.init_args.")] = value
    return args


# The cache names of the data the shipped configs generate (the data the README's numbers
# were measured on): a change to the core that should keep the data keeps these.
CACHES = [
    (MazeDataModule, ("conf/maze.yaml",), ["maze-train-4c02ee44e659.pt", "maze-val-0b323f110094.pt"]),
    (SweepDataModule, ("conf/sweep.yaml",), ["sweep-train-d03533aea009.pt", "sweep-val-21ca425c2c94.pt"]),
    (PointMazeDataModule, ("conf/pointmaze.yaml",), ["pointmaze-train-be0832261e34.pt", "pointmaze-val-4296cd2426f4.pt"]),
    (MinAtarDataModule, ("conf/minatar.yaml", "conf/minatar/breakout_flight.yaml"),
     ["minatar-train-3de1ae0ddfeb.pt", "minatar-val-06b351cd53a5.pt"]),
]


@pytest.mark.parametrize("cls,configs,names", CACHES, ids=[c[0].domain for c in CACHES])
def test_shipped_configs_generate_the_data_they_did(cls, configs, names):
    dm = cls(**shipped(*configs))
    assert [dm.cache_path(s).name for s in dm.data_splits] == names


@pytest.mark.parametrize("cls", DOMAINS, ids=[c.domain for c in DOMAINS])
def test_every_domain_takes_the_same_size_names(cls):
    dm = cls(n_train=3, n_val=1, n_val_envs=2, n_heldout=2, n_train_envs=1)
    assert (dm.sizes.n_train, dm.sizes.n_val, dm.sizes.n_val_envs, dm.sizes.n_heldout) == (3, 1, 2, 2)
    assert dm.seeds("train") == [SEED_BASE["train"] + i for i in range(3)]
    assert dm.seeds("heldout_shift") == [SEED_BASE["heldout_shift"] + i for i in range(2)]
    assert dm.seeds("train_envs") == dm.seeds("train")[:1]
    assert set(cls(n_train=3).sizes.__dict__) == {f for f in Splits.__dataclass_fields__}


def test_defaults_are_the_domains_and_train_envs_is_capped():
    maze = MazeDataModule()
    assert (maze.sizes.n_train, maze.sizes.train_episodes, maze.sizes.n_heldout) == (5, 4, 20)
    assert maze.sizes.environments("train_envs") == 5  # at most 20, and no more than there are
    assert MazeDataModule(n_train=30).sizes.environments("train_envs") == 20
    assert MazeDataModule(n_train_envs=0).sizes.environments("train_envs") == 0
    assert "train_envs" not in MazeDataModule(size=10, n_train=2, n_train_envs=0).eval_suites()
    assert SweepDataModule().sizes.n_train == 40 and MinAtarDataModule().sizes.n_train == 128


def test_one_episode_per_environment_where_a_domain_says_so():
    with pytest.raises(ConfigError, match=r"^data\.init_args\.val_envs_episodes: must be 1: sweep plays one"):
        SweepDataModule(val_envs_episodes=2)
    assert MazeDataModule(val_envs_episodes=2).sizes.val_envs_episodes == 2


def test_suites_skip_seeds_whose_environment_an_earlier_split_has():
    """7x7 mazes come in 5 layouts: validation and held-out suites take only layouts no
    earlier split has (the core's rule, from the domain's environment_key)."""
    dm = MazeDataModule(size=7, n_train=2, n_val_envs=2, n_heldout=1, n_train_envs=0)
    suites = dm.eval_suites()
    train = {dm.environment_key("train", s) for s in dm.seeds("train")}
    val = {w.tobytes() for w in suites["val_envs"].walls}
    heldout = {w.tobytes() for w in suites["heldout"].walls}
    assert len(suites["val_envs"].walls) == 2 * dm.sizes.val_envs_episodes  # 2 mazes (their layouts may repeat)
    assert not val & train and not heldout & (train | val)
    with pytest.raises(ConfigError, match=r"^data\.init_args\.n_val_envs: found only 0 val_envs mazes"):
        MazeDataModule(size=7, n_train=40).eval_suites()  # 40 training mazes hold all 5 layouts


def test_a_domain_declares_only_its_own():
    """The core's generate and build_suites serve every domain: none overrides them."""
    for cls in DOMAINS:
        for name in ("generate", "build_suites", "seeds", "prepare_data", "setup", "new_environments"):
            assert getattr(cls, name) is getattr(ProcedureDataModule, name), (cls.__name__, name)
