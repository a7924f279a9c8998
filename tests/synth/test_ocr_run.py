"""The three OCR recipes end to end on the local engine (curation layout, ledger lineage, CER in every sample's
.json) and `vlmdata train sft` for a few steps on the rendered shards."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import synth.ocr as ocr

pytest.importorskip("pipelines.engines.local")


def samples(out: Path) -> list[dict]:
    found = []
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as t:
            found += [json.load(t.extractfile(m)) for m in t.getmembers() if m.name.endswith(".json")]
    return found


def check_layout(out: Path) -> tuple[dict, list[dict]]:
    assert (out / "shards" / "index.json").is_file() and (out / "ledger.parquet").is_file()
    stats = json.loads((out / "stats.json").read_text())
    ledger = pq.read_table(out / "ledger.parquet").to_pylist()
    kept = [r for r in ledger if r["status"] == "kept"]
    assert kept and all(r["parent"] for r in kept)  # every kept sample names the seed/source it came from
    parents = {r["key"] for r in ledger if r["parent"] is None}
    assert {r["parent"] for r in kept} <= parents
    assert stats["status"]["kept"] == len(kept) == len(samples(out))
    return stats, ledger


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ocr-render")
    ocr.run("ocr-render", str(out), count=6)
    return out


def test_render_recipe_writes_the_curation_layout(rendered: Path) -> None:
    check_layout(rendered)
    for s in samples(rendered):
        assert s["cer"] <= 0.1 and s["font"] and s["font_size"] and s["color"].startswith("#")
        assert {it["level"] for it in s["ocr"]} == {"line", "word"} and s["messages"]


def test_scene_and_academic_recipes_run(tmp_path: Path) -> None:
    scene_out, academic_out = tmp_path / "scene", tmp_path / "academic"
    figures = tmp_path / "figures"  # python3-doc's figures with captions, as an image folder
    figures.mkdir()
    for png in sorted(Path(ocr.SCENE_DEFAULT_INPUT).glob("*.png")):
        (figures / png.name).write_bytes(png.read_bytes())
        (figures / png.name).with_suffix(".txt").write_text(f"figure {png.stem}")
    ocr.run("ocr-scene", str(scene_out), input=str(figures))
    _, ledger = check_layout(scene_out)
    assert any(r["reason"] == "no_text_detected" for r in ledger)  # the turtle drawing has no text
    ocr.run("ocr-academic", str(academic_out), count=1, overrides=None)
    _, _ = check_layout(academic_out)
    assert any("$" in s.get("ocr", [{}])[0]["text"] or "$" in str(s["messages"]) for s in samples(academic_out))


def test_sft_trains_on_the_rendered_shards(rendered: Path, tmp_path: Path) -> None:
    shards = str(rendered / "shards" / "*.tar")
    run = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "train", "sft", "--preset", "tiny", "--shards", shards,
         "--steps", "3", "--output", str(tmp_path / "sft")],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    metrics = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert any(m.get("step") == 3 for m in metrics)
