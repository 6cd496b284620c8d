"""The paper configs pin their recipe: a change of a loss default never changes what a shipped config trains; their
schedule (seed, trainer, optimizer and lr keys) is written once, in a base under configs/_base/ (configs/README.md)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from rspose.cli import run_lightning_cli
from rspose.losses import RankingLoss

ROOT = Path(__file__).resolve().parents[1]
PAPER = sorted(p for d in ("coco", "crowdpose", "mpii") for p in (ROOT / "configs" / d).glob("*.yaml"))
RANKING = [p for p in PAPER if p.stem.endswith("_rs")]
#: the keys a base gives; a paper config may override one of the model's (``model.lr: ...``), never write the block
SCHEDULE_KEYS = {"seed_everything", "trainer", "model"}


def _loss(path: Path) -> dict:
    """The loss as written in the config (a paper config adds it to its base as ``model.loss``)."""
    return yaml.safe_load(path.read_text())["model.loss"]


def _resolved(path: Path, capsys) -> dict:
    """The whole config as the CLI resolves it (base included), from ``rspose fit --config path --print_config``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code in (None, 0), path
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("path", PAPER, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_paper_config_takes_its_schedule_from_a_base(path):
    written = yaml.safe_load(path.read_text())
    base = (path.parent / written.get("config", "")).resolve()
    assert base.parent == ROOT / "configs" / "_base" and base.is_file(), f"{path}: config: {written.get('config')}"
    assert not SCHEDULE_KEYS & set(written), f"{path}: writes {sorted(SCHEDULE_KEYS & set(written))} of its base again"


def test_there_are_paper_ranking_configs():
    assert len(RANKING) >= 10 and len(PAPER) == 2 * len(RANKING)


@pytest.mark.parametrize("path", RANKING, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_ranking_config_spells_out_every_loss_setting(path):
    loss = _loss(path)
    assert loss["class_path"] == "rspose.losses.RankingLoss"
    wanted = set(inspect.signature(RankingLoss.__init__).parameters) - {"self"}
    given = set(loss.get("init_args") or {})
    assert given == wanted, f"{path}: left to defaults: {sorted(wanted - given)}; unknown: {sorted(given - wanted)}"
    RankingLoss(**loss["init_args"])  # and the recipe is one RankingLoss accepts


@pytest.mark.parametrize("path", RANKING, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_ranking_config_differs_from_its_baseline_only_in_the_loss(path, capsys):
    """The same network, data and schedule as the baseline config: one `--model.init_from` file fits both, and
    the difference between their results is the loss's."""
    stem = path.stem.removesuffix("_rs")
    (baseline,) = [p for p in PAPER if p.parent == path.parent and p.stem in (f"{stem}_mse", f"{stem}_kl")]
    ours, theirs = _resolved(path, capsys), _resolved(baseline, capsys)
    for cfg in (ours, theirs):
        cfg["model"].pop("loss")
    assert ours == theirs
