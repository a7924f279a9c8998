"""GUI and natural-image grounding recipes end to end on the local engine: lineage page → screenshot → QA samples
in the ledger, near-identical screenshots deduplicated, a hanging page an error row, shards with messages and
boxes; then `vlmdata train sft` runs a few steps on both kinds of shards."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.codec import TarSamples
from synth import grounding, gui
from tests.synth.test_grounding import _jpeg, build_tiny_owlv2

PAGE = """<!doctype html><html><head><title>{title}</title><meta name="viewport" content="width=device-width">
<style>body {{ font: 22px "DejaVu Sans", sans-serif; margin: 30px; }}</style></head><body>
<h1>{title}</h1><p>{body}</p><a href="x.html">{link}</a> <button>{button}</button>
<ul><li>{item1}</li><li>{item2}</li></ul></body></html>"""


def _page(title, body, link, button, item1, item2):
    return PAGE.format(title=title, body=body, link=link, button=button, item1=item1, item2=item2)


@pytest.fixture(scope="module")
def gui_run(tmp_path_factory):
    from pipelines.engines.local import LocalEngine

    root = tmp_path_factory.mktemp("gui")
    pages = root / "pages"
    pages.mkdir()
    first = _page("Garden Tools", "Rakes and spades for every season.", "Open catalogue", "Add to basket",
                  "Steel rake", "Wooden spade")
    (pages / "a.html").write_text(first)
    (pages / "a_copy.html").write_text(first)  # the same page under another name: near-identical screenshots
    (pages / "b.html").write_text(_page("Night Trains", "Sleeper cars across the continent.", "See timetable",
                                        "Book a berth", "Vienna to Rome", "Paris to Berlin"))
    (pages / "hang.html").write_text("<html><body><p>never</p><script>while (true) {}</script></body></html>")
    recipe = yaml.safe_load(gui.RECIPE.read_text())
    recipe["stages"][0].update(local_only=True, timeout_s=12, min_elements=3,
                               viewports=[{"name": "desktop", "width": 640, "height": 400},
                                          {"name": "phone", "width": 390, "height": 700, "mobile": True}])
    recipe["stages"][2].update(per_screenshot=2)
    recipe["engine"] = {"name": "local"}
    config = root / "gui.yaml"
    config.write_text(yaml.safe_dump(recipe))
    out = root / "out"
    engine = LocalEngine()
    try:
        report = gui.run(str(out), input=str(pages), config=str(config), engine=engine)
    finally:
        engine.close()
    return out, report


def test_gui_recipe_lineage_dedup_and_errors(gui_run):
    out, report = gui_run
    ledger = pq.read_table(out / "ledger.parquet").to_pylist()
    pages = {r["key"]: r for r in ledger if r["parent"] is None}
    by_source = {r["source"].rsplit("/", 1)[-1]: r for r in pages.values()}
    assert set(by_source) == {"a.html", "a_copy.html", "b.html", "hang.html"}
    assert by_source["hang.html"]["status"] == "error" and "page_timeout" in by_source["hang.html"]["reason"]
    assert by_source["b.html"]["reason"] == "expanded:2"
    shots = {r["key"]: r for r in ledger if r["origin"] == "gui_screenshot"}
    assert len(shots) == 6 and all(r["parent"] in pages for r in shots.values())
    # The copy's screenshots are near-identical to the original's: one of each pair survives.
    deduped = [r for r in shots.values() if r["stage"] == "near_dedup"]
    assert len(deduped) == 2
    assert {pages[r["parent"]]["source"].rsplit("/", 1)[-1] for r in deduped} <= {"a.html", "a_copy.html"}
    qa = [r for r in ledger if r["origin"] == "gui_qa"]
    assert qa and all(r["parent"] in shots and shots[r["parent"]]["stage"] == "gui_qa" for r in qa)
    kept = [r for r in qa if r["status"] == "kept"]
    assert len(kept) == 4 * 2  # four surviving screenshots, two pairs each
    stats = json.loads((out / "stats.json").read_text())
    assert stats["status"]["kept"] == len(kept)
    assert "near_dedup" in stats["by_stage"]


def test_gui_shards_carry_messages_boxes_elements(gui_run):
    out, _ = gui_run
    index = json.loads((out / "shards" / "index.json").read_text())
    samples = []
    for entry in index["shardlist"]:
        with open(out / "shards" / entry["url"], "rb") as f:
            samples += list(TarSamples(f))
    assert len(samples) == 8
    checked = matched = 0
    for sample in samples:
        meta = json.loads(sample["json"])
        assert "png" in sample
        assert meta["messages"][0]["content"][0]["type"] == "image"
        [box] = meta["boxes"]
        assert any(e["box"] == box["box"] and e["text"] == box["label"] for e in meta["elements"])
        assert meta["viewport"] in ("desktop", "phone") and meta["qa_task"] in ("rec", "reg")
        if meta.get("gui_ocr"):
            checked += meta["gui_ocr"]["checked"]
            matched += meta["gui_ocr"]["matched"]
    assert checked and matched / checked > 0.8


@pytest.fixture(scope="module")
def grounding_run(tmp_path_factory):
    from pipelines.engines.local import LocalEngine

    root = tmp_path_factory.mktemp("grounding")
    images = root / "images"
    images.mkdir()
    captions = ["A dog runs on the beach with a red ball", "two cats sitting on a wooden bench in the park",
                "very quickly", "a man riding a horse next to a white fence"]
    colors = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (120, 120, 30)]
    for i, (caption, color) in enumerate(zip(captions, colors, strict=True)):
        (images / f"{i}.jpg").write_bytes(_jpeg(color))
        (images / f"{i}.txt").write_text(caption)
    model = build_tiny_owlv2(str(root / "owlv2"))
    recipe = yaml.safe_load(grounding.RECIPE.read_text())
    recipe["stages"][1].update(model=model, score_threshold=0.0, min_box_side=1.0, max_box_area=1.0, nms_iou=0.3)
    recipe["engine"] = {"name": "local"}
    config = root / "grounding.yaml"
    config.write_text(yaml.safe_dump(recipe))
    out = root / "out"
    engine = LocalEngine()
    try:
        report = grounding.run(str(images), str(out), config=str(config), engine=engine)
    finally:
        engine.close()
    return out, report


def test_grounding_recipe_keeps_images_with_two_boxes(grounding_run):
    out, report = grounding_run
    ledger = pq.read_table(out / "ledger.parquet").to_pylist()
    kept = [r for r in ledger if r["status"] == "kept"]
    assert len(kept) == 3 and all(r["origin"] == "grounding_detect" for r in kept)
    dropped = {r["source"]: r["reason"] for r in ledger if r["parent"] is None and r["status"] == "dropped"}
    assert any(reason == "no_noun_phrases" for reason in dropped.values())


def test_sft_trains_on_gui_and_grounding_shards(gui_run, grounding_run, tmp_path):
    from typer.testing import CliRunner

    from train.cli import app

    shards = [str(gui_run[0] / "shards" / "*.tar"), str(grounding_run[0] / "shards" / "*.tar")]
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump({
        "tokenizer_samples": 50,
        "data": {"shuffle_buffer": 8, "shuffle_initial": 4},
        "run": {"save_hf": False, "tensorboard": False, "cpu_threads": 1, "ckpt_every": 0},
    }))
    args = ["sft", "--config", str(config), "--preset", "tiny", "--steps", "3", "--output", str(tmp_path / "sft"),
            "--seq-len", "1024", "--rows", "2", "--no-progress"]
    for s in shards:
        args += ["--shards", s]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(m["loss"] > 0 and m["loss_tokens"] > 0 for m in rows)
