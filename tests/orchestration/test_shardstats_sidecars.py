"""Per-shard sidecar statistics: written with each shard, equal to a scan of the tar, exact to merge."""

from __future__ import annotations

import json

import pytest

from orchestration.shardstats.config import InspectConfig
from orchestration.shardstats.summary import summarise
from pipelines.shard_stats import ShardStats, sidecar_path
from pipelines.shards import ShardWriter
from pipelines.stats import ValueHistogram, bucket_key, bucket_span
from tests.orchestration.test_shardstats_scan import KINDS, make_sample


def test_sidecar_path():
    assert sidecar_path("/a/00000-0001.tar") == "/a/00000-0001.stats.json"
    assert sidecar_path("http://h/x.tar.gz") == "http://h/x.tar.gz.stats.json"


def test_writer_sidecars_equal_a_scan_of_the_tars(tmp_path):
    out = tmp_path / "shards"
    writer = ShardWriter(str(out), str(tmp_path / "tmp"), "00000", max_samples=7, max_bytes=1 << 30)
    for i in range(20):
        writer.write(make_sample(i, KINDS[i % len(KINDS)]))
    infos = writer.close()
    assert [i.nsamples for i in infos] == [7, 7, 6]
    for info in infos:
        with open(sidecar_path(str(out / info.url))) as f:
            assert json.load(f)["nsamples"] == info.nsamples
    merged = summarise([str(out)], InspectConfig(workers=1))
    scanned = summarise([str(out)], InspectConfig(workers=1, use_sidecars=False))
    assert merged.data["totals"]["from_sidecar"] == 3 and scanned.data["totals"]["scanned"] == 3
    for key in ("tasks", "sizes", "scores", "problems", "extensions"):
        assert merged.data[key] == scanned.data[key], key
    assert merged.data["totals"]["samples"] == 20
    # With sidecars the browser still gets real samples: the first few of each browsed shard, read from the tar.
    browsed = summarise([str(out)], InspectConfig(workers=1, browse_per_shard=2), browse=True)
    assert browsed.data["totals"]["from_sidecar"] == 3
    assert [s["key"] for s in browsed.samples] == ["s00000", "s00001", "s00007", "s00008", "s00014", "s00015"]


def test_add_reads_every_field_and_reports_problems():
    stats = ShardStats()
    sample = make_sample(3, "ocr")
    fields = stats.add(sample)
    assert fields is not None and fields["key"] == "s00003"
    assert stats.tasks == {"ocr": 1}
    assert set(stats.fields) == {"clip_score", "ocr[].score"}  # width/height are image sizes, not scores
    assert set(stats.sizes) == {"caption_chars", "image_width", "image_height", "image_bytes"}
    stats.add({"__key__": "a", "txt": b"\xff\xfe", "json": b"[1, 2]"})
    stats.add({"__key__": "b", "jpg": b"not a jpeg", "json": b"{bad"})
    assert stats.problems == {"no_image": 1, "caption_not_utf8": 1, "json_invalid": 2, "image_unreadable": 1}
    assert stats.nsamples == 3
    assert [e["key"] for e in stats.examples][:2] == ["a", "a"]
    # The dict form round-trips.
    assert ShardStats.from_dict(stats.to_dict()).to_dict() == stats.to_dict()


def test_image_size_from_the_header_when_json_lacks_it():
    stats = ShardStats()
    sample = make_sample(0)
    sample["json"] = json.dumps({"caption": "c"}).encode()
    stats.add(sample)
    assert stats.sizes["image_width"].min == 96 and stats.sizes["image_height"].min == 64


def test_merge_is_exact():
    samples = [make_sample(i, KINDS[i % len(KINDS)]) for i in range(15)]
    whole, a, b = ShardStats(), ShardStats(), ShardStats()
    for i, s in enumerate(samples):
        whole.add(s)
        (a if i < 6 else b).add(s)
    merged = a.merge(b).to_dict()
    expected = whole.to_dict()
    for hist in ("sizes", "fields"):
        for name in expected[hist]:
            assert merged[hist][name]["sum"] == pytest.approx(expected[hist][name]["sum"])  # float order differs
            merged[hist][name]["sum"] = expected[hist][name]["sum"]
            merged[hist][name]["mean"] = expected[hist][name]["mean"]
    assert merged == expected


def test_histogram_buckets_keep_two_significant_digits():
    assert bucket_key(0.2734) == "27e-2"
    assert bucket_key(136) == "13e1"
    assert bucket_key(0.1) == "10e-2" and bucket_key(1000) == "10e2"
    assert bucket_key(-0.5) == "-50e-2" and bucket_key(0) == "0"
    lo, hi = bucket_span("27e-2")
    assert abs(lo - 0.27) < 1e-12 and abs(hi - 0.28) < 1e-12
    h = ValueHistogram()
    for v in range(1, 101):
        h.add(v / 100)
    assert h.n == 100 and h.min == 0.01 and h.max == 1.0
    assert abs(h.quantile(0.5) - 0.5) <= 0.01
    edges, counts = h.bins(10)
    assert len(edges) == 11 and sum(counts) == 100 and max(counts) - min(counts) <= 2
    h.add(float("nan"))
    assert h.n == 100
