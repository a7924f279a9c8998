import io
import json
import os
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from pipelines.readers import InputError, ReaderConfig, plan_parts, read_part
from pipelines.schema import make_key
from tests.images import jpeg_bytes, png_bytes


def _read_all(inputs, **cfg):
    config = ReaderConfig(**cfg)
    parts = plan_parts([str(i) for i in inputs], config)
    return parts, [row for p in parts for b in read_part(p, config) for row in b.to_pylist()]


def test_folder_reader_pairs_images_with_captions_and_metadata(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "a.txt").write_text("a red square\n")
    (tmp_path / "sub" / "b.png").write_bytes(png_bytes())
    (tmp_path / "sub" / "b.txt").write_text("noise")
    (tmp_path / "sub" / "b.json").write_text(json.dumps({"lang": "en"}))
    (tmp_path / "c.png").write_bytes(png_bytes(seed=3))  # no caption
    (tmp_path / "d.png").write_bytes(png_bytes(seed=4))
    (tmp_path / "d.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "e.txt").write_text("caption without image")
    (tmp_path / "README").write_text("ignored: not a sample file")
    parts, rows = _read_all([tmp_path], part_size=2, dataset="toy")
    assert [len(p.items) for p in parts] == [2, 2, 1]
    by_source = {os.path.relpath(r["source"], tmp_path): r for r in rows}
    assert set(by_source) == {"a.jpg", "sub/b.png", "c.png", "d.png", "e.txt"}
    a = by_source["a.jpg"]
    assert a["keep"] and a["text"] == "a red square\n" and a["image"] == (tmp_path / "a.jpg").read_bytes()
    assert a["key"] == make_key("toy", "a.jpg") and a["dataset"] == "toy"
    assert json.loads(by_source["sub/b.png"]["meta"]) == {"lang": "en"}
    errors = {s: r["reason"].split(":")[0] for s, r in by_source.items() if not r["keep"]}
    assert errors == {"c.png": "caption_missing", "d.png": "caption_not_utf8", "e.txt": "image_missing"}
    assert all(r["stage"] == "read" and r["error"] for r in by_source.values() if not r["keep"])
    assert [r["ord"] for r in rows if r["part"] == parts[0].id] == [0, 1]


def test_keys_are_stable_and_independent_of_where_the_input_lives(tmp_path):
    for root in (tmp_path / "x" / "set", tmp_path / "y" / "set"):
        root.mkdir(parents=True)
        (root / "a.jpg").write_bytes(jpeg_bytes())
        (root / "a.txt").write_text("cap")
    _, first = _read_all([tmp_path / "x" / "set"])
    _, second = _read_all([tmp_path / "y" / "set"])
    assert first[0]["key"] == second[0]["key"] == make_key("set", "a.jpg")


def _write_wds(path, samples):
    with wds.TarWriter(str(path)) as sink:
        for s in samples:
            sink.write(s)


def test_auto_parts_are_equal_shares_in_a_multiple_of_the_workers(tmp_path):
    from pipelines.readers.base import AUTO_MAX, AUTO_UNIT, PARTS_PER_WORKER

    def folder(name, n):
        (tmp_path / name).mkdir()
        for i in range(n):
            (tmp_path / name / f"{i:05d}.jpg").write_bytes(b"x")  # planning reads names, not pixels
        return tmp_path / name

    config = ReaderConfig(fingerprint="stat")
    for n, workers in [(3000, 2), (1000, 3), (40000, 2)]:
        parts = plan_parts([str(folder(f"f{n}", n))], config, parallelism=workers)
        sizes = [len(p.items) for p in parts]
        assert sum(sizes) == n and [p.id for p in parts] == list(range(len(parts)))
        assert [i for p in parts for i in p.items] == sorted(i for p in parts for i in p.items)  # in order, all of them
        assert len(parts) % workers == 0 and len(parts) >= workers * PARTS_PER_WORKER
        assert max(sizes) - min(sizes) < 2 * AUTO_UNIT and max(sizes) <= AUTO_MAX  # no small trailing part
    assert [len(p.items) for p in plan_parts([str(tmp_path / "f3000")], config, parallelism=2)] == [384] * 7 + [312]
    # a small input: one part per unit; parts never span two inputs
    small = plan_parts([str(folder("a", 100)), str(folder("b", 30))], config, parallelism=2)
    assert [(len(p.items), p.input.rsplit("/", 1)[-1]) for p in small] == [(64, "a"), (36, "a"), (30, "b")]


def test_webdataset_reader_reads_img2dataset_tars_and_survives_a_truncated_one(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    good = [{"__key__": f"{i:09d}", "jpg": jpeg_bytes(seed=i), "txt": f"cap {i}", "json": {"url": f"http://x/{i}", "key": f"{i:09d}"}} for i in range(5)]
    _write_wds(shards / "00000.tar", good)
    _write_wds(shards / "00001.tar", good[:3])
    data = (shards / "00001.tar").read_bytes()
    (shards / "00001.tar").write_bytes(data[: len(data) // 2])
    parts, rows = _read_all([shards])
    assert len(parts) == 2
    first = [r for r in rows if r["part"] == parts[0].id]
    assert [r["text"] for r in first] == [f"cap {i}" for i in range(5)]
    assert json.loads(first[0]["meta"])["url"] == "http://x/0"
    assert first[0]["source"].endswith("00000.tar::000000000.jpg")
    second = [r for r in rows if r["part"] == parts[1].id]
    assert any(r["keep"] for r in second)  # samples before the break are read
    broken = [r for r in second if not r["keep"]]
    assert broken and all(r["error"] and r["reason"].startswith(("tar_truncated", "tar_broken")) for r in broken)


def test_webdataset_reader_flags_samples_without_image_and_bad_json(tmp_path):
    tar = tmp_path / "x.tar"
    _write_wds(tar, [
        {"__key__": "a", "txt": "only text"},
        {"__key__": "b", "png": png_bytes(), "txt": "ok", "json": b"{not json"},
        {"__key__": "c", "png": png_bytes(seed=1), "txt": "fine"},
    ])
    _, rows = _read_all([tar])
    assert [(r["keep"], (r["reason"] or "").split(":")[0]) for r in rows] == [
        (False, "image_missing"), (False, "meta_not_json"), (True, "")]


def test_parquet_reader_takes_image_bytes_and_caption_columns(tmp_path):
    table = pa.table({
        "image": [jpeg_bytes(seed=i) for i in range(5)] + [None],
        "caption": [f"c{i}" for i in range(6)],
        "url": [f"http://h/{i}" for i in range(6)],
    })
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=2)
    parts, rows = _read_all([tmp_path / "t.parquet"], part_size=4)
    assert [(p.row_start, p.row_end) for p in parts] == [(0, 4), (4, 6)]
    assert [r["text"] for r in rows] == [f"c{i}" for i in range(6)]
    assert rows[2]["source"].endswith("t.parquet#row=2")
    assert json.loads(rows[2]["meta"]) == {"url": "http://h/2"}
    assert not rows[5]["keep"] and rows[5]["reason"] == "image_missing"


def test_parquet_reader_accepts_hugging_face_image_structs(tmp_path):
    table = pa.table({"img": [{"bytes": png_bytes(), "path": "a.png"}], "text": ["x"]})
    pq.write_table(table, tmp_path / "hf.parquet")
    _, rows = _read_all([tmp_path / "hf.parquet"])
    assert rows[0]["keep"] and rows[0]["image"] == png_bytes()


def test_unknown_or_unreadable_inputs_raise_clear_errors(tmp_path):
    (tmp_path / "notes.csv").write_text("a,b")
    with pytest.raises(InputError, match="notes.csv"):
        _read_all([tmp_path / "notes.csv"])
    with pytest.raises(InputError, match="no such file"):
        _read_all([tmp_path / "missing"])
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="bad.parquet"):
        _read_all([tmp_path / "bad.parquet"])
    pq.write_table(pa.table({"pixels": [b"x"], "text": ["t"]}), tmp_path / "nocol.parquet")
    with pytest.raises(InputError, match="image"):
        _read_all([tmp_path / "nocol.parquet"])


def test_a_file_that_is_not_a_tar_becomes_one_error_row(tmp_path):
    (tmp_path / "fake.tar").write_bytes(b"\x00garbage" * 10)
    _, rows = _read_all([tmp_path / "fake.tar"])
    assert len(rows) == 1 and not rows[0]["keep"] and rows[0]["error"]
    # An all-garbage file that tarfile reads as empty still leaves a trace.
    assert rows[0]["reason"].split(":")[0] in ("tar_empty", "tar_broken")
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    _, rows = _read_all([tmp_path / "empty.tar"])
    assert [r["reason"] for r in rows] == ["tar_empty"]


def test_rows_come_in_bounded_batches(tmp_path):
    for i in range(10):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(seed=i))
        (tmp_path / f"{i}.txt").write_text("c")
    config = ReaderConfig(batch_size=3)
    part = plan_parts([str(tmp_path)], config)[0]
    assert [b.num_rows for b in read_part(part, config)] == [3, 3, 3, 1]
    assert io  # keep import used for readers that need it


def test_detection_stops_at_an_image_and_hashing_matches_hashlib(tmp_path):
    import hashlib

    from pipelines.readers.base import _hash_files, detect_format

    root = tmp_path / "mixed"
    (root / "a").mkdir(parents=True)
    (root / "a" / "page.html").write_text("<p>x</p>")
    (root / "b" / "c").mkdir(parents=True)
    (root / "b" / "c" / "pic.JPG").write_bytes(b"\xff\xd8not really")
    assert detect_format(str(root)) == "folder"  # images win, wherever they are
    (root / "b" / "c" / "pic.JPG").unlink()
    os.mkfifo(root / "b" / "c" / "fake.jpg")  # not a regular file: never an image
    assert detect_format(str(root)) == "html"
    files = [str(root / "a" / "page.html"), str(root / "b" / "c" / "fake.jpg")]
    files += [str(tmp_path / f"f{i}.bin") for i in range(11)]
    for i, f in enumerate(files[2:]):
        open(f, "wb").write(os.urandom(1000 * i))
    digests = _hash_files(files)
    assert digests[files[1]] == "not-a-regular-file"
    assert all(digests[f] == hashlib.sha1(open(f, "rb").read()).hexdigest() for f in files if f != files[1])


def test_local_files_are_hashed_on_one_thread_per_core_remote_ones_on_more(monkeypatch):
    from pipelines.readers import base

    monkeypatch.setattr(base.os, "cpu_count", lambda: 2)
    local = [f"/data/{i}.jpg" for i in range(100)] + [f"file:///data/{i}.txt" for i in range(10)]
    assert base._hash_threads(local) == 2  # more would queue on the GIL
    assert base._hash_threads(local[:1]) == 1
    assert base._hash_threads([*local, "s3://bucket/x.jpg"]) == base.HASH_THREADS == 8  # latency-bound
    assert base._hash_threads(["https://host/a.tar"]) == 1


def test_inputs_with_one_base_name_get_distinct_datasets_and_an_input_given_twice_is_refused(tmp_path):
    for parent, seed in (("a", 1), ("b", 2)):
        (tmp_path / parent / "data").mkdir(parents=True)
        (tmp_path / parent / "data" / "s.jpg").write_bytes(jpeg_bytes(seed=seed))
        (tmp_path / parent / "data" / "s.txt").write_text(f"from {parent}")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "s.jpg").write_bytes(jpeg_bytes(seed=3))
    (tmp_path / "c" / "s.txt").write_text("from c")
    a, b, c = tmp_path / "a" / "data", tmp_path / "b" / "data", tmp_path / "c"
    _, rows = _read_all([a, b, c])
    assert [r["dataset"] for r in rows] == ["a/data", "b/data", "c"]  # a lone name stays as it was
    assert len({r["key"] for r in rows}) == 3
    assert rows[2]["key"] == make_key("c", "s.jpg")

    for twice in ([a, a], [a, f"{a}/"], [a, tmp_path / "b" / ".." / "a" / "data"], ["count:3", "count:4"]):
        with pytest.raises(InputError, match="more than once|given twice"):
            plan_parts([str(i) for i in twice], ReaderConfig())
    with pytest.raises(InputError, match=f"{a}/ is given twice \\(also as {a}\\)"):
        plan_parts([str(a), f"{a}/"], ReaderConfig())
    os.symlink(a, tmp_path / "alias")  # a link is an input of its own name: its keys differ, exact dedup sees copies
    _, rows = _read_all([a, tmp_path / "alias"])
    assert [r["dataset"] for r in rows] == ["data", "alias"] and rows[0]["key"] != rows[1]["key"]
