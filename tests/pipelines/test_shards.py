import json
import os
import tarfile

import webdataset as wds

from pipelines.codec import member_bytes
from pipelines.shard_stats import sidecar_path
from pipelines.shards import ShardWriter, write_index
from tests.images import jpeg_bytes


def _samples(n, size=2000):
    image = jpeg_bytes()
    return [
        {"__key__": f"k{i:04d}", "jpg": image, "txt": f"caption {i:02d}".encode(),
         "json": json.dumps({"i": i, "score": i / 10}).encode(), "bin": os.urandom(size)}
        for i in range(n)
    ]


def test_rolls_over_by_count_and_bytes_and_reads_back_with_webdataset(tmp_path):
    samples = _samples(25)
    per_sample = member_bytes(samples[0])
    writer = ShardWriter(str(tmp_path / "shards"), str(tmp_path / "tmp"), "00000", max_samples=10,
                         max_bytes=per_sample * 7 + 100)
    for s in samples:
        writer.write(s)
    shards = writer.close()
    assert [s.nsamples for s in shards] == [7, 7, 7, 4]  # bytes bound before the count bound
    assert all(s.filesize == os.path.getsize(tmp_path / "shards" / s.url) for s in shards)
    assert os.listdir(tmp_path / "tmp") == []
    index = write_index(str(tmp_path / "shards"), shards, "toy")
    listed = json.load(open(index))
    assert listed["__kind__"] == "wids-shard-index-v1" and sum(s["nsamples"] for s in listed["shardlist"]) == 25
    urls = [str(tmp_path / "shards" / s["url"]) for s in listed["shardlist"]]
    back = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    assert [b["__key__"] for b in back] == [s["__key__"] for s in samples]
    assert back[3]["jpg"].size == (64, 48) and back[3]["json"]["i"] == 3 and back[3]["txt"] == "caption 03"


def test_count_bound_and_sidecar_statistics(tmp_path):
    writer = ShardWriter(str(tmp_path / "s"), str(tmp_path / "t"), "00001", max_samples=4, max_bytes=1 << 30)
    for s in _samples(10, size=10):
        writer.write(s)
    shards = writer.close()
    assert [s.nsamples for s in shards] == [4, 4, 2]
    stats = json.load(open(sidecar_path(str(tmp_path / "s" / shards[0].url))))
    assert stats["nsamples"] == 4 and stats["extensions"]["jpg"] == 4
    assert stats["fields"]["score"]["max"] == 0.3


def test_same_samples_give_byte_identical_tars(tmp_path):
    samples = _samples(5)
    outs = []
    for run in ("a", "b"):
        w = ShardWriter(str(tmp_path / run), str(tmp_path / f"t{run}"), "00000", 100, 1 << 30)
        for s in samples:
            w.write(s)
        outs.append((tmp_path / run / w.close()[0].url).read_bytes())
    assert outs[0] == outs[1]
    with tarfile.open(tmp_path / "a" / "00000-0000.tar") as tf:
        assert {m.mtime for m in tf.getmembers()} == {0}


def test_a_shard_is_visible_only_when_complete(tmp_path):
    writer = ShardWriter(str(tmp_path / "s"), str(tmp_path / "t"), "00000", 3, 1 << 30)
    for s in _samples(2):
        writer.write(s)
    assert [n for n in os.listdir(tmp_path / "s") if n.endswith(".tar")] == []
    assert len(os.listdir(tmp_path / "t")) == 1
    writer.write(_samples(4)[3])
    writer.write(_samples(5)[4])  # rolls over: the first shard is renamed into place
    assert [n for n in os.listdir(tmp_path / "s") if n.endswith(".tar")] == ["00000-0000.tar"]
    writer.close()
