"""The curate pipeline on a real Spark session (local mode) over real images."""

import dataclasses
import io
import json
import os
import random
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from pipelines.engines.spark import SparkEngine
from pipelines.readers import plan_parts, read_part
from pipelines.run import run_pipeline
from pipelines.spec import load_spec
from synth.demo_corpus import MAX_DISTINCT_DROPPED, check_faults, distinct_dropped, fault_rates
from tests.images import jpeg_bytes, png_bytes

DEMO = "configs/curate/base.yaml"


def _input_keys(spec, inputs):
    parts = plan_parts(inputs, spec.reader)
    return [r["key"] for p in parts for b in read_part(p, spec.reader) for r in b.to_pylist()]


def _shard_bytes(out):
    shards = os.path.join(out, "shards")
    return {n: open(os.path.join(shards, n), "rb").read() for n in sorted(os.listdir(shards)) if n.endswith(".tar")}


@pytest.fixture(scope="module")
def demo_run(spark, demo_corpus, tmp_path_factory):
    root, manifest = demo_corpus
    spec = load_spec(DEMO, {"engine.driver_reduce_rows": 0, "engine.driver_compare_rows": 0})  # Spark's own reduces, not the driver's
    out = str(tmp_path_factory.mktemp("demo_out"))
    report = run_pipeline(spec, [str(root / "corpus")], out, SparkEngine(spec.engine, spark))
    return spec, root, manifest, out, report


def test_every_input_key_is_kept_dropped_or_error_exactly_once(demo_run):
    spec, root, _, out, report = demo_run
    ledger = pq.read_table(os.path.join(out, "ledger.parquet")).to_pylist()
    keys = _input_keys(spec, [str(root / "corpus")])
    assert sorted(r["key"] for r in ledger) == sorted(keys)
    assert len(set(keys)) == len(keys)
    status = report.stats["status"]
    assert status["kept"] + status["dropped"] + status["error"] == len(keys) == report.stats["inputs"]
    assert {r["status"] for r in ledger} == {"kept", "dropped", "error"}
    assert all(r["reason"] and r["stage"] for r in ledger if r["status"] != "kept")


def test_every_injected_fault_is_in_the_ledger_under_its_stage_and_reason(demo_run):
    spec, root, manifest, out, _ = demo_run
    ledger = pq.read_table(os.path.join(out, "ledger.parquet")).to_pylist()
    assert len(manifest.faults) >= 20
    assert check_faults(manifest, ledger, root / "corpus", [s.op for s in spec.stages]) == []
    dups = [r for r in ledger if (r["reason"] or "").startswith("exact_duplicate:")]
    survivors = {r["reason"].split(":", 1)[1] for r in dups}
    kept = {r["key"] for r in ledger if r["status"] == "kept"}
    assert survivors <= kept  # a duplicate names a survivor that is really kept


def test_cropped_copies_are_found_and_distinct_stamps_are_spared(demo_run):
    spec, root, manifest, out, _ = demo_run
    ledger = pq.read_table(os.path.join(out, "ledger.parquet")).to_pylist()
    cropped = dataclasses.replace(manifest, faults=[f for f in manifest.faults if "near_cropped" in f.files[-1]])
    caught, injected = fault_rates(cropped, ledger, root / "corpus")["near_duplicate"]
    assert injected == 10 and caught >= 9  # pHash alone finds about 1 in 10 of these
    spared, distinct = distinct_dropped(manifest, ledger, root / "corpus")
    assert distinct > 700
    assert len(spared) <= MAX_DISTINCT_DROPPED * distinct, spared


def test_shards_read_back_with_webdataset_and_carry_their_source(demo_run):
    _, _, _, out, report = demo_run
    index = json.load(open(os.path.join(out, "shards", "index.json")))
    urls = [os.path.join(out, "shards", s["url"]) for s in index["shardlist"]]
    ledger = {r["key"]: r for r in pq.read_table(os.path.join(out, "ledger.parquet")).to_pylist()}
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    assert len(samples) == report.stats["status"]["kept"] == sum(s["nsamples"] for s in index["shardlist"])
    for s in samples:
        image = s.get("png", s.get("jpg"))
        assert isinstance(image, Image.Image) and image.size[0] >= 24
        assert s["txt"].strip() and s["json"]["caption"] == s["txt"]
        assert s["json"]["source"] == ledger[s["__key__"]]["source"]
        assert ledger[s["__key__"]]["status"] == "kept"
        assert (s["json"]["width"], s["json"]["height"]) == image.size
    with_translations = [s for s in samples if s["json"]["meta"].get("captions", {}).get("fr")]
    assert len(with_translations) > len(samples) // 2
    stats = json.load(open(os.path.join(out, "stats.json")))
    assert stats["shards"]["samples"] == len(samples) and stats["histograms"]["width"]["n"] == len(samples)
    # Concept balancing: the head shrinks toward t, every tail entry (count <= t) keeps all its samples.
    before, after = stats["concepts"]["before"], stats["concepts"]["after"]
    t = 12
    head = max(before, key=before.get)
    assert before[head] > 3 * t and after[head] < before[head]
    tail = [e for e, n in before.items() if n <= t]
    assert tail and all(after.get(e, 0) == before[e] for e in tail)
    assert all(set(s["json"]["concepts"]) <= set(after) for s in samples)


def test_a_second_run_gives_byte_identical_shards_and_ledger(demo_run, spark, tmp_path):
    spec, root, _, out, _ = demo_run
    run_pipeline(spec, [str(root / "corpus")], str(tmp_path), SparkEngine(spec.engine, spark))
    assert _shard_bytes(out) == _shard_bytes(str(tmp_path))
    assert pq.read_table(os.path.join(out, "ledger.parquet")).equals(pq.read_table(tmp_path / "ledger.parquet"))


def test_rerun_after_losing_parts_redoes_only_them_and_matches(demo_run, spark, tmp_path):
    spec, root, _, out, _ = demo_run
    shutil.copytree(out, tmp_path / "o")
    work = tmp_path / "o" / "_work" / "parts"
    for name in ("00002.json", "00004.json"):
        os.remove(work / name)  # as if the run died before these parts finished
    os.remove(tmp_path / "o" / "shards" / "00004-0000.tar")
    report = run_pipeline(spec, [str(root / "corpus")], str(tmp_path / "o"), SparkEngine(spec.engine, spark))
    assert report.parts_resumed == report.parts_total - 2
    assert _shard_bytes(out) == _shard_bytes(str(tmp_path / "o"))


def _random_corpus(root, rng: random.Random):
    """A mix of good and broken inputs in all three formats."""
    folder = root / "folder"
    folder.mkdir()
    expected_keys = 0
    for i in range(rng.randint(40, 70)):
        kind = rng.choice(["good"] * 6 + ["tiny", "solid", "truncated", "empty", "noimage", "dup", "badcap", "nocap"])
        size = (rng.randint(40, 300), rng.randint(40, 300))
        data = jpeg_bytes(size, seed=i) if rng.random() < 0.5 else png_bytes(size, seed=i)
        caption = f"sample {i} with words".encode()
        if kind == "tiny":
            data = png_bytes((rng.randint(1, 10), rng.randint(1, 10)), seed=i)
        elif kind == "solid":
            buf = io.BytesIO()
            Image.new("RGB", size, (rng.randint(0, 255),) * 3).save(buf, format="PNG")
            data = buf.getvalue()
        elif kind == "truncated":
            data = data[: len(data) // 3]
        elif kind == "empty":
            data = b""
        elif kind == "noimage":
            data = b"plain text pretending to be a picture"
        elif kind == "dup":
            data = png_bytes((50, 50), seed=999)
        elif kind == "badcap":
            caption = rng.choice([b"", b"   ", b"\xff\xfe\xfa broken"])
        ext = "png" if data[:4] == b"\x89PNG" else "jpg"
        (folder / f"{i:03d}.{ext}").write_bytes(data)
        if kind != "nocap":
            (folder / f"{i:03d}.txt").write_bytes(caption)
        expected_keys += 1
    n_rows = rng.randint(5, 30)
    images = [jpeg_bytes((64, 64), seed=1000 + i) if rng.random() > 0.2 else b"junk" for i in range(n_rows)]
    pq.write_table(pa.table({"jpg": images, "caption": [f"row {i}" for i in range(n_rows)]}), root / "rows.parquet")
    expected_keys += n_rows
    with wds.TarWriter(str(root / "shard.tar")) as sink:
        for i in range(rng.randint(5, 20)):
            sink.write({"__key__": f"{i:06d}", "png": png_bytes((48, 48), seed=2000 + i), "txt": f"tar {i}"})
            expected_keys += 1
    return [str(folder), str(root / "rows.parquet"), str(root / "shard.tar")], expected_keys


@pytest.mark.parametrize("seed", [11, 12])
def test_randomised_inputs_keep_the_ledger_complete(spark, tmp_path, seed):
    inputs, expected = _random_corpus(tmp_path, random.Random(seed))
    spec = load_spec(DEMO, {"reader.part_size": 16, "shards.max_samples": 10})
    report = run_pipeline(spec, inputs, str(tmp_path / "out"), SparkEngine(spec.engine, spark))
    ledger = pq.read_table(tmp_path / "out" / "ledger.parquet").to_pylist()
    keys = _input_keys(spec, inputs)
    assert len(keys) == expected == len(ledger) == report.stats["inputs"]
    assert sorted(r["key"] for r in ledger) == sorted(keys)
    kept = [r for r in ledger if r["status"] == "kept"]
    samples = list(wds.WebDataset(sorted(str(p) for p in (tmp_path / "out" / "shards").glob("*.tar")), shardshuffle=False))
    assert sorted(s["__key__"] for s in samples) == sorted(r["key"] for r in kept)
    assert all(s["txt"] and ("png" in s or "jpg" in s) and s["json"] for s in samples)
