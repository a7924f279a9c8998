"""Scanning shards: tasks, scores and sizes from real tars; broken input reported with the rest summarised; inputs
named as folders, globs, brace patterns, index.json, file:// and http:// URLs; parallel equals serial."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest
import webdataset as wds
from PIL import Image, ImageDraw

from orchestration.shardstats.config import InspectConfig
from orchestration.shardstats.sources import SourceError, resolve
from orchestration.shardstats.summary import summarise


def image_bytes(width: int, height: int, fmt: str = "PNG", seed: int = 0) -> bytes:
    im = Image.new("RGB", (width, height), (240, 240, 230))
    draw = ImageDraw.Draw(im)
    draw.rectangle([width // 4, height // 4, width // 2, height // 2], fill=(200, 30 + seed % 200, 40))
    draw.ellipse([width // 2, height // 3, width - 5, height - 5], fill=(30, 90, 200))
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def make_sample(i: int, kind: str = "caption") -> dict[str, Any]:
    """A real img2dataset-style sample of one task kind, with the fields later stages add."""
    width, height = 96 + i % 7 * 8, 64 + i % 5 * 8
    fields: dict[str, Any] = {"key": f"s{i:05d}", "caption": f"sample {i} " + "x" * (i % 13),
                              "width": width, "height": height, "clip_score": 0.2 + (i % 10) / 100}
    if kind == "grounding":
        fields["boxes"] = [{"box": [width // 4, height // 4, width // 2, height // 2], "label": "red square"},
                           {"box": [width // 2, height // 3, width - 5, height - 5], "label": "blue disc"}]
    elif kind == "ocr":
        fields["ocr"] = [{"text": "HELLO", "box": [[4, 4], [60, 4], [60, 20], [4, 20]], "score": 0.9 + (i % 10) / 100}]
    elif kind == "cot":
        fields["messages"] = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many shapes?"}]},
            {"role": "assistant", "content": "<think>a square and a disc</think><answer><|begin_of_box|>2"
                                             "<|end_of_box|></answer>"},
        ]
    elif kind == "gui":
        fields["task"] = "gui"
    return {"__key__": fields["key"], "png": image_bytes(width, height, seed=i),
            "txt": fields["caption"].encode(), "json": json.dumps(fields).encode()}


KINDS = ("caption", "grounding", "ocr", "cot", "gui")


def write_tar(path: Path, samples: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(path), encoder=False) as sink:
        for sample in samples:
            sink.write(sample)
    return path


def write_shards(folder: Path, nshards: int = 4, per_shard: int = 10) -> list[Path]:
    paths = []
    for s in range(nshards):
        samples = [make_sample(s * per_shard + j, KINDS[(s * per_shard + j) % len(KINDS)]) for j in range(per_shard)]
        paths.append(write_tar(folder / f"{s:05d}.tar", samples))
    return paths


def count_samples(paths: list[Path]) -> int:
    """The real number of samples: distinct keys, read with plain tarfile."""
    keys = set()
    for path in paths:
        with tarfile.open(path) as tf:
            keys.update((os.path.basename(path), m.name.split(".", 1)[0]) for m in tf if m.isfile())
    return len(keys)


def test_scan_counts_tasks_scores_and_sizes(tmp_path):
    paths = write_shards(tmp_path / "shards", nshards=3, per_shard=10)
    report = summarise([str(tmp_path / "shards")], InspectConfig(workers=1))
    data = report.data
    assert data["totals"]["shards"] == 3
    assert data["totals"]["samples"] == count_samples(paths) == 30
    assert data["totals"]["filesize"] == sum(p.stat().st_size for p in paths)
    assert data["tasks"] == {"caption": 6, "grounding": 6, "ocr": 6, "cot": 6, "gui": 6}
    assert data["scores"]["clip_score"]["n"] == 30
    assert 0.2 <= data["scores"]["clip_score"]["min"] < data["scores"]["clip_score"]["max"] <= 0.3
    assert data["scores"]["ocr[].score"]["n"] == 6  # nested OCR confidences are found too
    assert "boxes" not in " ".join(data["scores"])  # coordinates are not scores
    assert data["sizes"]["image_width"]["min"] == 96 and data["sizes"]["image_width"]["max"] == 96 + 6 * 8
    assert data["problems"] == {}
    assert all(row["status"] == "ok" and row["source"] == "scan" for row in data["shards"])


def test_broken_input_is_reported_and_the_rest_summarised(tmp_path):
    folder = tmp_path / "shards"
    good = write_tar(folder / "00000.tar", [make_sample(i) for i in range(10)])
    # A tar cut in the middle of a member: the samples read before the break still count.
    whole = write_tar(tmp_path / "whole.tar", [make_sample(100 + i) for i in range(10)]).read_bytes()
    (folder / "00001.tar").write_bytes(whole[: len(whole) // 2 + 100])
    # A tar cut exactly at a member boundary (no end-of-archive blocks): tarfile alone would not notice.
    with tarfile.open(tmp_path / "whole.tar") as tf:
        members = tf.getmembers()
    cut = members[9].offset  # header of the 4th sample's first member
    (folder / "00002.tar").write_bytes(whole[:cut])
    # A sample without an image, and one whose .json is not JSON.
    bad = [make_sample(200 + i) for i in range(4)]
    del bad[1]["png"]
    bad[2]["json"] = b"{not json"
    write_tar(folder / "00003.tar", bad)
    (folder / "00004.tar").write_bytes(b"this is not a tar at all" * 40)

    data = summarise([str(folder)], InspectConfig(workers=2)).data
    rows = {r["name"]: r for r in data["shards"]}
    assert rows["00000.tar"]["status"] == "ok" and rows["00000.tar"]["nsamples"] == 10
    assert rows["00001.tar"]["status"] == "truncated"
    assert 1 <= rows["00001.tar"]["nsamples"] < 10
    assert rows["00002.tar"]["status"] == "truncated" and rows["00002.tar"]["nsamples"] == 3
    assert rows["00003.tar"]["status"] == "ok" and rows["00003.tar"]["nsamples"] == 4
    assert rows["00004.tar"]["status"] == "unreadable" and rows["00004.tar"]["nsamples"] == 0
    assert data["problems"]["truncated_tar"] == 2
    assert data["problems"]["unreadable_shard"] == 1
    assert data["problems"]["no_image"] == 1
    assert data["problems"]["json_invalid"] == 1
    assert {e["key"] for e in data["problem_examples"] if e["problem"] in ("no_image", "json_invalid")} == {
        "s00201", "s00202"}
    assert data["totals"]["samples"] == sum(r["nsamples"] for r in rows.values())
    assert data["totals"]["truncated"] == 2 and data["totals"]["unreadable"] == 1
    assert data["sizes"]["image_width"]["n"] == data["totals"]["samples"] - 1  # every sample with an image
    assert count_samples([good]) == 10


def test_inputs_as_globs_braces_index_and_file_urls(tmp_path):
    paths = write_shards(tmp_path / "shards", nshards=4, per_shard=3)
    index = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": "t",
             "shardlist": [{"url": p.name, "nsamples": 3, "filesize": p.stat().st_size} for p in paths[:2]]}
    (tmp_path / "index.json").write_text(json.dumps({**index, "shardlist": [
        {**e, "url": f"shards/{e['url']}"} for e in index["shardlist"]]}))
    cases = {
        str(tmp_path / "shards" / "*.tar"): 4,
        str(tmp_path / "shards" / "{00000..00002}.tar"): 3,
        f"file://{tmp_path}/shards/{{00001..00003}}.tar": 3,
        f"file://{tmp_path}/shards": 4,
        str(tmp_path / "index.json"): 2,
    }
    for given, nshards in cases.items():
        sources = resolve([given])
        assert len(sources.shards) == nshards, given
        data = summarise([given], InspectConfig(workers=1)).data
        assert data["totals"]["samples"] == 3 * nshards, given
    # The same shard named twice is counted once.
    assert len(resolve([str(paths[0]), str(tmp_path / "shards" / "0000[0-1].tar")]).shards) == 2
    with pytest.raises(SourceError):
        resolve([str(tmp_path / "nothing-here")])


def test_a_missing_shard_in_a_list_is_reported_not_fatal(tmp_path):
    write_shards(tmp_path / "shards", nshards=2, per_shard=3)
    data = summarise([str(tmp_path / "shards" / "{00000..00002}.tar")], InspectConfig(workers=1)).data
    status = {r["name"]: r["status"] for r in data["shards"]}
    assert status == {"00000.tar": "ok", "00001.tar": "ok", "00002.tar": "unreadable"}
    assert data["totals"]["samples"] == 6 and data["problems"] == {"unreadable_shard": 1}


@pytest.fixture
def http_root(tmp_path):
    """A real HTTP server on loopback serving tmp_path."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_urls_with_braces(tmp_path, http_root):
    paths = write_shards(tmp_path / "shards", nshards=3, per_shard=4)
    report = summarise([f"{http_root}/shards/{{00000..00002}}.tar"], InspectConfig(workers=2), browse=True)
    local = summarise([str(tmp_path / "shards")], InspectConfig(workers=1)).data
    assert report.data["totals"]["samples"] == count_samples(paths) == 12
    assert report.data["tasks"] == local["tasks"]
    assert report.data["scores"] == local["scores"]
    assert report.samples and report.samples[0]["thumb"].startswith("data:image/jpeg;base64,")


def test_parallel_equals_serial(tmp_path):
    write_shards(tmp_path / "shards", nshards=6, per_shard=5)
    serial = summarise([str(tmp_path / "shards")], InspectConfig(workers=1), browse=True)
    parallel = summarise([str(tmp_path / "shards")], InspectConfig(workers=2), browse=True)
    assert serial.data == parallel.data
    assert [s["key"] for s in serial.samples] == [s["key"] for s in parallel.samples]


def test_browser_selection_is_bounded_but_counts_are_full(tmp_path):
    write_shards(tmp_path / "shards", nshards=6, per_shard=5)
    cfg = InspectConfig(workers=1, browse_per_shard=2, browse_max=5)
    report = summarise([str(tmp_path / "shards")], cfg, browse=True)
    assert len(report.samples) == 5
    assert len({s["shard"] for s in report.samples}) == 3  # spread over shards, not the first one only
    assert report.data["totals"]["samples"] == 30
    grounding = next(s for s in summarise([str(tmp_path / "shards")], InspectConfig(workers=1), browse=True).samples
                     if s["task"] == "grounding")
    assert [b["label"] for b in grounding["boxes"]] == ["red square", "blue disc"]
    assert grounding["width"] == json.loads(grounding["json"])["width"]


def test_a_cut_member_loses_only_its_own_sample(tmp_path):
    """The sample before a cut member is complete: it is counted (and the cut one reported)."""
    path = write_tar(tmp_path / "shards" / "00000.tar", [make_sample(i) for i in range(5)])
    with tarfile.open(path) as tf:
        first_of_4th = next(m for m in tf if m.name.startswith("s00003."))
    path.write_bytes(path.read_bytes()[: first_of_4th.offset_data + 50])
    data = summarise([str(path)], InspectConfig(workers=1)).data
    assert data["totals"]["samples"] == 3 and data["totals"]["truncated"] == 1
    assert "s00003" in data["shards"][0]["error"]
