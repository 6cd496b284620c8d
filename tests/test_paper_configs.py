"""The paper configs pin their recipe: a change of a loss default never changes what a shipped config trains."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from rspose.losses import RankingLoss

ROOT = Path(__file__).resolve().parents[1]
PAPER = sorted(p for d in ("coco", "crowdpose", "mpii") for p in (ROOT / "configs" / d).glob("*.yaml"))
RANKING = [p for p in PAPER if p.stem.endswith("_rs")]


def _loss(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["model"]["loss"]


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
def test_ranking_config_differs_from_its_baseline_only_in_the_loss(path):
    """The same network, data and schedule as the baseline config: one `--model.init_from` file fits both, and
    the difference between their results is the loss's."""
    stem = path.stem.removesuffix("_rs")
    (baseline,) = [p for p in PAPER if p.parent == path.parent and p.stem in (f"{stem}_mse", f"{stem}_kl")]
    ours, theirs = yaml.safe_load(path.read_text()), yaml.safe_load(baseline.read_text())
    for cfg in (ours, theirs):
        cfg["model"].pop("loss")
    assert ours == theirs
