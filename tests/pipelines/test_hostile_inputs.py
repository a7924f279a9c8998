"""Hostile but valid inputs (issue 12): each is read as it is, or becomes a ledger row naming the reason; never a crash."""

from __future__ import annotations

import datetime
import decimal
import gzip
import json
import os
import subprocess
import sys
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.engines.local import LocalEngine
from pipelines.readers.base import detect_format
from pipelines.run import run_pipeline
from pipelines.spec import PipelineSpec, SpecError, load_spec
from tests.images import jpeg_bytes, tar_bytes

SPEC = PipelineSpec.model_validate({"stages": [{"op": "decode"}], "engine": {"name": "local", "workers": 0}})


def _run(inputs, out):
    return run_pipeline(SPEC, [str(i) for i in inputs], str(out), LocalEngine(SPEC.engine))


def _ledger(out):
    return pq.read_table(out / "ledger.parquet").to_pylist()


def _samples(out):
    found = {}
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf:
                if m.name.endswith(".json"):
                    found[m.name[:-5]] = json.loads(tf.extractfile(m).read())
    return found


def test_parquet_with_unusual_extra_columns_and_captions_of_the_wrong_type(tmp_path):
    img = jpeg_bytes((40, 30), seed=1)
    table = pa.table({
        "image": [img, img, img, img],
        "caption": pa.array([["a", "list"], None, None, None], type=pa.list_(pa.string())).cast(pa.list_(pa.string())),
        "when": pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5)] * 4, type=pa.timestamp("us")),
        "day": pa.array([datetime.date(2024, 1, 2)] * 4, type=pa.date32()),
        "price": pa.array([decimal.Decimal("1.25")] * 4, type=pa.decimal128(5, 2)),
        "blob": pa.array([{"raw": b"\x00\x01", "n": 1}] * 4, type=pa.struct([("raw", pa.binary()), ("n", pa.int8())])),
    })
    pq.write_table(table, tmp_path / "lists.parquet")
    ints = table.drop_columns(["caption"]).append_column("caption", pa.array([7, 8, 9, 10]))
    pq.write_table(ints, tmp_path / "ints.parquet")
    good = table.drop_columns(["caption"]).append_column("caption", pa.array(["fine", "also fine", "ok", "yes"]))
    pq.write_table(good, tmp_path / "good.parquet")
    report = _run([tmp_path / "lists.parquet", tmp_path / "ints.parquet", tmp_path / "good.parquet"], tmp_path / "out")
    rows = _ledger(tmp_path / "out")
    assert report.stats["status"]["kept"] == 4 and report.stats["status"]["error"] == 8
    reasons = {r["reason"] for r in rows if r["status"] == "error"}
    assert "caption_not_text:column 'caption' holds list" in reasons
    assert "caption_not_text:column 'caption' holds int" in reasons
    meta = next(iter(_samples(tmp_path / "out").values()))["meta"]
    assert meta["when"] == "2024-01-02T03:04:05" and meta["day"] == "2024-01-02" and meta["price"] == "1.25"
    assert meta["blob"] == {"raw": {"base64": "AAE="}, "n": 1}
    assert not list((tmp_path / "out").rglob("*.tmp-*"))


def test_a_named_pipe_is_never_opened_and_gets_a_ledger_row(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg_bytes((40, 30), seed=2))
    (src / "a.txt").write_text("a picture")
    os.mkfifo(src / "pipe.png")
    report = _run([src], tmp_path / "out")  # would hang forever if the pipe were read
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in _ledger(tmp_path / "out")}
    assert rows["pipe.png"]["status"] == "error" and rows["pipe.png"]["reason"] == "not_a_regular_file"
    assert rows["a.jpg"]["status"] == "kept" and report.stats["inputs"] == 2


def test_detection_goes_by_what_the_files_are(tmp_path):
    # One stray .tar under an image folder does not hide the images.
    src = tmp_path / "imgs"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg_bytes((40, 30), seed=3))
    (src / "a.txt").write_text("a picture")
    (src / "old.tar").write_bytes(b"")
    assert detect_format(str(src)) == "folder"
    # img2dataset's `--output_format files` layout: 00000/KEY.jpg|txt|json plus 00000.parquet metadata.
    files = tmp_path / "i2d"
    (files / "00000").mkdir(parents=True)
    for i in range(3):
        (files / "00000" / f"00000000{i}.jpg").write_bytes(jpeg_bytes((40, 30), seed=10 + i))
        (files / "00000" / f"00000000{i}.txt").write_text(f"caption {i}")
        (files / "00000" / f"00000000{i}.json").write_text(json.dumps({"url": f"http://x/{i}.jpg", "key": i}))
    pq.write_table(pa.table({"key": ["000000000"], "status": ["success"]}), files / "00000.parquet")
    assert detect_format(str(files)) == "folder"
    report = _run([files], tmp_path / "out")
    assert report.stats["status"]["kept"] == 3 and report.stats["sources"] == {str(files): "folder"}




def test_gzip_tars_under_either_name_and_interleaved_members(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    a, b = jpeg_bytes((40, 30), seed=4), jpeg_bytes((40, 30), seed=5)
    interleaved = tar_bytes([("ia.jpg", a), ("ib.jpg", b), ("ia.txt", b"first"), ("ib.txt", b"second")])
    (shards / "zipped-named-tar.tar").write_bytes(gzip.compress(interleaved))
    (shards / "plain.tar.gz").write_bytes(gzip.compress(tar_bytes([("c.jpg", a), ("c.txt", b"third")])))
    report = _run([shards], tmp_path / "out")
    rows = _ledger(tmp_path / "out")
    assert len({r["key"] for r in rows}) == len(rows)  # keys are unique
    assert report.stats["status"] == {"kept": 3, "dropped": 0, "error": 0}, rows


def test_set_overrides_that_do_not_fit_the_recipe_are_clear_errors(tmp_path):
    spec = load_spec("configs/curate/base.yaml", {"stages.1.min_side": 3})
    assert spec.stages[1].config["min_side"] == 3
    with pytest.raises(SpecError, match="engine.master is a str"):
        load_spec("configs/curate/base.yaml", {"engine.master.x": 1})
    with pytest.raises(SpecError, match="indices 0..4"):
        load_spec("configs/curate/base.yaml", {"stages.9.min_side": 1})


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_ends_in_one_readable_message_and_a_log(tmp_path, prefect_server):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        src = tmp_path / "in"
        src.mkdir()
        for i in range(40):
            (src / f"{i}.jpg").write_bytes(jpeg_bytes((200, 150), seed=100 + i))
            (src / f"{i}.txt").write_text(f"picture {i}")
        env = {**os.environ, "PREFECT_API_URL": prefect_server}
        run = subprocess.run([sys.executable, "-m", "orchestration.cli", "curate", "-i", str(src), "-o",
                              str(disk / "out"), "--engine", "local", "--set", "reader.fingerprint=stat"],
                             env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
        assert "no space left on the device" in run.stdout and "run.log" in run.stdout
        assert "Traceback" not in run.stdout
        assert not list((disk / "out").rglob("*.tmp-*"))
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
