"""`vlmdata train clip`: open_clip's own trainer learns a small CLIP on the demo corpus's real stamps (CPU)."""

import json
from pathlib import Path

import pytest

from filters.clip_score import ClipScore
from train.clip import ClipTrainConfig, iter_samples, roc_auc, train_clip, write_shards

EPOCHS = 10  # in-sample ROC-AUC ~0.95 at 10 epochs (RECIPES: 0.98); fewer epochs leave too thin a margin over 0.9


def _clean_samples(clean: Path):
    for png in sorted(clean.rglob("*.png")):
        key = str(png.relative_to(clean).with_suffix("")).replace("/", "_").replace(".", "_")
        yield key, "png", png.read_bytes(), png.with_suffix(".txt").read_text().strip()


@pytest.fixture(scope="module")
def trained(demo_corpus, tmp_path_factory):
    root, _ = demo_corpus
    tmp = tmp_path_factory.mktemp("clip_train")
    pattern = write_shards(list(_clean_samples(root / "clean")), tmp / "shards", 4)
    cfg = ClipTrainConfig(shards=pattern, output=tmp / "model", epochs=EPOCHS, holdout_fraction=0.0, seed=0)
    return cfg, train_clip(cfg)


def test_trained_clip_separates_true_from_shuffled_captions(trained):
    cfg, metrics = trained
    assert metrics["all"]["samples"] >= 700
    assert metrics["all"]["roc_auc"] >= 0.9, metrics["all"]
    saved = json.loads((cfg.output / "metrics.json").read_text())
    assert saved["all"] == metrics["all"]
    assert (cfg.output / "clip.pt").stat().st_size < 40 << 20  # weights only, no optimizer state


def test_threshold_json_keeps_the_promised_share_and_feeds_threshold_auto(trained):
    cfg, metrics = trained
    threshold = json.loads((cfg.output / "threshold.json").read_text())["threshold"]
    assert metrics["all"]["true_kept"] >= cfg.keep_true_fraction
    op = ClipScore(model="vlmdata-clip-demo", pretrained=str(cfg.output / "clip.pt"),
                   model_config=str(cfg.output / "vlmdata-clip-demo.json"), threshold="auto")
    op.setup()
    assert op.threshold == threshold
    samples = list(iter_samples(cfg.shards))[:40]
    scores = [s for _, s, _, _ in op.encode_batches([s[2] for s in samples], [s[3] for s in samples])]
    assert len(scores) == 1 and len(scores[0]) == 40


def test_roc_auc_matches_its_definition():
    assert roc_auc([3.0, 2.0], [1.0, 0.0]) == 1.0
    assert roc_auc([0.0], [1.0]) == 0.0
    assert roc_auc([1.0, 1.0], [1.0, 0.0]) == 0.75  # ties count half
