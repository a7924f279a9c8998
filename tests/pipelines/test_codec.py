"""The sample codec: typed columns become JSON structures in the shard and read back equal; other readers (webdataset,
HF-style json parsing) see the same samples; cut, interleaved and gzip tars are read as far as they hold samples."""

from __future__ import annotations

import gzip
import io
import json
import math
import subprocess
import sys
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from pipelines.codec import (
    SampleDecodeError,
    ShardReadError,
    TarSamples,
    TarWriter,
    _header,
    _tarfile_header,
    decode_sample,
    iter_samples,
    open_url,
    sample_from_row,
    sidecar_schemas,
    tarfile_samples,
    tarfile_to_samples,
)
from pipelines.columns import BOXES, MESSAGES, OCR, ocr_item, qa, sidecar, working
from pipelines.schema import record_schema
from pipelines.shards import ShardWriter, sidecar_file, write_index
from tests.images import jpeg_bytes, png_bytes

DEMO_FIELDS = (
    pa.field("width", pa.int32()), pa.field("height", pa.int32()), pa.field("image_format", pa.string()),
    pa.field("pixel_sha1", pa.string()), pa.field("color_std", pa.float32()), pa.field("clip_score", pa.float32()),
    sidecar(pa.field("image_embedding", pa.list_(pa.float16())), "embeddings"),
    sidecar(pa.field("text_embedding", pa.list_(pa.float16())), "embeddings"),
    pa.field("phash", pa.string()), working(pa.field("thumbnail", pa.binary())),
    pa.field("concepts", pa.list_(pa.string())),
)
STRUCTURED = (MESSAGES, BOXES, OCR, pa.field("score", pa.float32()))


def _row(i: int, **extra) -> dict:
    return {"key": f"k{i:04d}", "parent": None, "image": jpeg_bytes(seed=i), "text": f"a red square {i} — été",
            "source": f"/data/in.tar::k{i:04d}.jpg", "dataset": "demo", "meta": json.dumps({"url": f"http://x/{i}"}),
            "part": 0, "ord": i, "origin": None, "keep": True, "error": False, "stage": None, "reason": None, **extra}


def _rows_through_arrow(rows: list[dict], schema: pa.Schema) -> list[dict]:
    """Rows as a writer gets them: through a typed RecordBatch and back to Python."""
    return pa.RecordBatch.from_pylist(rows, schema=schema).to_pylist()


def _structured_rows(n: int = 3) -> tuple[list[dict], pa.Schema]:
    schema = record_schema(STRUCTURED)
    rows = [
        _row(i, messages=qa(f"What is drawn {i}?", "A red square."),
             boxes=[{"box": [1.0, 2.0, 30.0, 40.0], "label": "red square", "score": None}],
             ocr=[ocr_item("HELLO", [4, 4, 60, 20], score=0.5)], score=float("nan") if i == 1 else 0.25)
        for i in range(n)
    ]
    return _rows_through_arrow(rows, schema), schema


def test_structured_columns_round_trip_as_json_structures(tmp_path):
    rows, schema = _structured_rows()
    writer = ShardWriter(str(tmp_path / "shards"), str(tmp_path / "tmp"), "00000", 100, 1 << 30)
    for row in rows:
        writer.write(*sample_from_row(row, schema))
    shards = writer.close()
    url = str(tmp_path / "shards" / shards[0].url)
    with open_url(url) as stream:
        back = [decode_sample(s) for s in iter_samples(stream, url)]
    assert [b["__key__"] for b in back] == ["k0000", "k0001", "k0002"]
    fields = back[0]["json"]
    # JSON structures, never strings; null struct members left out.
    assert fields["messages"] == [
        {"role": "user", "content": [{"type": "image", "image": 0}, {"type": "text", "text": "What is drawn 0?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A red square."}]},
    ]
    assert fields["boxes"] == [{"box": [1.0, 2.0, 30.0, 40.0], "label": "red square"}]
    assert fields["ocr"][0]["text"] == "HELLO" and fields["ocr"][0]["quad"][2] == [60.0, 20.0]
    assert fields["ocr"][0]["score"] == 0.5 and fields["ocr"][0]["level"] == "line"
    assert fields["caption"] == back[0]["txt"] == "a red square 0 — été"
    assert fields["meta"] == {"url": "http://x/0"} and fields["source"] == "/data/in.tar::k0000.jpg"
    assert not {"part", "ord", "origin", "keep", "error", "stage", "reason", "image", "text", "parent"} & set(fields)
    assert back[1]["json"]["score"] is None  # NaN → null: valid JSON for every reader
    assert back[0]["jpg"] == rows[0]["image"]


def test_demo_columns_encode_as_the_previous_writer_did():
    """Byte-identical to the shard writer before the codec (its code, kept here as the reference)."""
    schema = record_schema(DEMO_FIELDS)
    rows = _rows_through_arrow([
        _row(i, width=64, height=48, image_format="png" if i else "jpeg", pixel_sha1="ab" * 20, color_std=12.5 + i / 3,
             clip_score=0.31 + i / 7, image_embedding=[0.5, -0.25], text_embedding=None if i else [0.125, 1.0],
             phash="f0f0", thumbnail=b"\xff\xd8", concepts=["square", "red"]) for i in range(3)
    ], schema)
    not_in_json = {"image", "text", "meta", "part", "ord", "origin", "keep", "error", "stage", "reason",
                   "image_embedding", "text_embedding", "thumbnail"}

    def previous(row: dict) -> dict[str, bytes]:
        fields = {k: v for k, v in row.items() if k not in not_in_json and v is not None}
        fields["caption"] = row["text"]
        fields["meta"] = json.loads(row["meta"]) if row.get("meta") else {}
        ext = "png" if row.get("image_format") == "png" else "jpg"
        return {"__key__": row["key"], ext: row["image"], "txt": (row["text"] or "").encode(),
                "json": json.dumps(fields, ensure_ascii=False, sort_keys=True).encode()}

    for row in rows:
        sample, sidecars = sample_from_row(row, schema)
        assert sample == previous(row)
        assert sidecars == {"embeddings": {"image_embedding": row["image_embedding"],
                                           "text_embedding": row["text_embedding"]}}
    assert sidecar_schemas(schema)["embeddings"].names == ["key", "image_embedding", "text_embedding"]


def test_sidecar_columns_land_beside_the_shard_typed(tmp_path):
    schema = record_schema(DEMO_FIELDS)
    rows = _rows_through_arrow([_row(i, image_embedding=[0.5, float(i)]) for i in range(3)], schema)
    writer = ShardWriter(str(tmp_path / "s"), str(tmp_path / "t"), "00000", 2, 1 << 30,
                         sidecar_schemas=sidecar_schemas(schema))
    for row in rows:
        writer.write(*sample_from_row(row, schema))
    shards = writer.close()
    table = pq.read_table(sidecar_file(str(tmp_path / "s" / shards[1].url), "embeddings"))
    assert table.schema.field("image_embedding").type == pa.list_(pa.float16())
    assert table.to_pylist() == [{"key": "k0002", "image_embedding": [0.5, 2.0], "text_embedding": None}]
    assert writer.stats.nsamples == 3 and writer.stats.sizes["caption_chars"].n == 3


def test_text_only_rows_have_no_image_member_and_binary_columns_are_refused():
    schema = record_schema([pa.field("blob", pa.binary())])
    sample, _ = sample_from_row(_row(0, image=None), record_schema())
    assert sorted(sample) == ["__key__", "json", "txt"]
    with pytest.raises(TypeError, match="blob"):
        sample_from_row(_row(0, blob=b"x"), schema)


def test_other_readers_see_the_same_samples(tmp_path):
    rows, schema = _structured_rows(4)
    writer = ShardWriter(str(tmp_path / "shards"), str(tmp_path / "tmp"), "00000", 2, 1 << 30)
    for i, row in enumerate(rows):
        if i == 3:
            row = {**row, "image_format": "png", "image": png_bytes()}
        writer.write(*sample_from_row(row, schema))
    shards = writer.close()
    write_index(str(tmp_path / "shards"), shards, "t")
    urls = [str(tmp_path / "shards" / s.url) for s in shards]
    ours = [decode_sample(s) for s in tarfile_samples(urls)]
    theirs = list(wds.WebDataset(urls, shardshuffle=False))
    assert [s["__key__"] for s in theirs] == [s["__key__"] for s in ours] == ["k0000", "k0001", "k0002", "k0003"]
    for mine, other in zip(ours, theirs, strict=True):
        assert json.loads(other["json"]) == mine["json"]
        assert other["txt"].decode() == mine["txt"]
        assert {k: other[k] for k in ("jpg", "png") if k in other} == {k: mine[k] for k in ("jpg", "png") if k in mine}
    # HF `datasets`' webdataset builder: members grouped by key with plain tarfile, `.json` through json.loads.
    hf: dict[str, dict] = {}
    for url in urls:
        with tarfile.open(url) as tf:
            for m in tf:
                key, ext = m.name.split(".", 1)
                data = tf.extractfile(m).read()
                hf.setdefault(key, {})[ext] = json.loads(data) if ext == "json" else data
    assert [v["json"] for v in hf.values()] == [s["json"] for s in ours]
    assert isinstance(hf["k0000"]["json"]["messages"], list)


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _samples(n: int) -> list[dict[str, bytes]]:
    return [{"__key__": f"s{i}", "jpg": jpeg_bytes(seed=i), "txt": f"c{i}".encode(), "json": b'{"i": %d}' % i}
            for i in range(n)]


def test_a_cut_tar_keeps_every_complete_sample(tmp_path):
    buf = io.BytesIO()
    with TarWriter(buf) as w:
        for s in _samples(5):
            w.write(s)
    whole = buf.getvalue()
    with tarfile.open(fileobj=io.BytesIO(whole)) as tf:
        first_of_s3 = next(m for m in tf if m.name == "s3.jpg")
    # Cut inside the first member of s3: s0, s1 and s2 are complete and all come back; s3 is reported lost.
    cut = whole[: first_of_s3.offset_data + 100]
    reader = TarSamples(io.BytesIO(cut))
    assert [s["__key__"] for s in reader] == ["s0", "s1", "s2"]
    assert reader.lost == "s3" and "cut" in (reader.error or "")
    (tmp_path / "cut.tar").write_bytes(cut)
    faults: list[Exception] = []
    got = list(tarfile_samples([str(tmp_path / "cut.tar"), {"url": str(tmp_path / "missing.tar")}],
                               handler=lambda e: faults.append(e) or True))
    assert [s["__key__"] for s in got] == ["s0", "s1", "s2"] and got[0]["__url__"] == str(tmp_path / "cut.tar")
    assert len(faults) == 2 and all(isinstance(f, ShardReadError) for f in faults)
    assert "s3" in str(faults[0]) and "missing.tar" in str(faults[1])
    with pytest.raises(ShardReadError):
        list(tarfile_samples([str(tmp_path / "cut.tar")]))


def test_interleaved_members_are_grouped_by_key():
    members = [("ia.png", b"A"), ("ib.png", b"B"), ("ia.txt", b"a"), ("ib.txt", b"b"), ("__meta__", b"m")]
    reader = TarSamples(io.BytesIO(_tar(members)))
    assert list(reader) == [{"__key__": "ia", "png": b"A", "txt": b"a"}, {"__key__": "ib", "png": b"B", "txt": b"b"}]
    assert reader.error is None and reader.problems == []
    # Suffixes are lower-cased and a name starting with a dot has no key, as webdataset reads them.
    assert list(TarSamples(io.BytesIO(_tar([("x.JPG", b"1"), ("d/.hidden", b"2")])))) == [{"__key__": "x", "jpg": b"1"}]


def test_gzip_tar_is_read_through_the_pipeline_stage(tmp_path):
    buf = io.BytesIO()
    with TarWriter(buf) as w:
        for s in _samples(3):
            w.write(s)
    (tmp_path / "s.tar.gz").write_bytes(gzip.compress(buf.getvalue()))
    stage = tarfile_to_samples()
    got = list(wds.DataPipeline(lambda: iter([{"url": str(tmp_path / "s.tar.gz")}]), stage))
    assert [s["__key__"] for s in got] == ["s0", "s1", "s2"] and got[2]["txt"] == b"c2"


def test_writer_is_deterministic_and_refuses_keys_readers_would_split():
    outs = []
    for _ in range(2):
        buf = io.BytesIO()
        with TarWriter(buf) as w:
            for s in _samples(2):
                w.write(s)
        outs.append(buf.getvalue())
    assert outs[0] == outs[1]
    with pytest.raises(ValueError, match="dot"):
        TarWriter(io.BytesIO()).write({"__key__": "a.b", "txt": b"x"})


def _stdlib_tar(samples: list[dict]) -> bytes:
    """What `tarfile` in stream mode writes for the same members and metadata (the writer's reference)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            for ext in sorted(k for k in sample if not k.startswith("__")):
                info = tarfile.TarInfo(f"{sample['__key__']}.{ext}")
                info.size, info.mtime, info.mode, info.uname, info.gname = len(sample[ext]), 0, 0o444, "vlmdata", "vlmdata"
                tar.addfile(info, io.BytesIO(sample[ext]))
    return buf.getvalue()


def test_writer_writes_the_bytes_stdlib_tarfile_writes():
    # sizes on and around block and record boundaries, empty members, long keys (USTAR's prefix field), non-ASCII
    rng = np.random.default_rng(3)
    sizes = [0, 1, 511, 512, 513, 10239, 10240, 10241, 100_003]
    keys = ["a", "ünïcødé/ключ", "dir/" * 30 + "k", "n" * 90]
    for n in range(0, 9):
        samples = [{"__key__": f"{keys[i % len(keys)]}{i}",
                    **{ext: rng.bytes(int(sizes[(i + j) % len(sizes)])) for j, ext in enumerate(("jpg", "txt", "json")[: 1 + i % 3])}}
                   for i in range(n)]
        buf = io.BytesIO()
        with TarWriter(buf) as w:
            for s in samples:
                w.write(s)
        assert buf.getvalue() == _stdlib_tar(samples)
        assert [m.name for m in tarfile.open(fileobj=io.BytesIO(buf.getvalue()))] == [
            f"{s['__key__']}.{e}" for s in samples for e in sorted(k for k in s if k != "__key__")]
    # a name USTAR cannot hold fails its sample before any of its members is written
    buf = io.BytesIO()
    with pytest.raises(ValueError, match="too long"):
        TarWriter(buf).write({"__key__": "x" * 120, "json": b"{}", "txt": b"t"})
    assert buf.getvalue() == b""


def test_member_headers_are_tarfiles_at_every_name_length_and_size():
    """The template-patched header (ASCII names up to 100 bytes, sizes below 8 GiB) against tarfile's own, across
    the edges where the fast path hands over to tarfile (101-byte and non-ASCII names, the 8 GiB size field)."""
    rng = np.random.default_rng(5)
    alphabet = list("abcxyz0189/_-.~")
    for length in [1, 2, 50, 99, 100, 101, 102, 150]:
        for size in [0, 1, 511, 512, 513, 116_000, 8**11 - 1, 8**11, 8**11 + 7, int(rng.integers(0, 2**40))]:
            name = "".join(rng.choice(alphabet, size=length))
            try:
                want = _tarfile_header(name, size)
            except ValueError:  # too long for USTAR's prefix/name split: both refuse it
                with pytest.raises(ValueError):
                    _header(name, size)
                continue
            assert _header(name, size) == want
    assert _header("ключ.txt", 3) == _tarfile_header("ключ.txt", 3)


def test_decode_errors_are_one_clear_type():
    with pytest.raises(SampleDecodeError, match="'k'.*json"):
        decode_sample({"__key__": "k", "json": b"{nope"})
    with pytest.raises(SampleDecodeError, match="txt"):
        decode_sample({"__key__": "k", "txt": b"\xff\xfe"})
    assert math.isnan(decode_sample({"__key__": "k", "json": b'{"x": NaN}'})["json"]["x"])  # third-party shards


def test_the_core_never_imports_the_stats_package():
    code = (
        "import importlib, pkgutil, sys, pipelines\n"
        "for m in pkgutil.walk_packages(pipelines.__path__, 'pipelines.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.startswith('orchestration')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
