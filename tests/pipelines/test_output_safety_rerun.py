"""A rerun deletes exactly the files a run recorded writing (never a file of yours, whatever its name), a run killed
mid-part resumes over its own half-written files, an older folder without records is read safely, and a bad
--output or reader.part_size is a one-line error (exit 2) before anything is created."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

import pipelines.execute
from orchestration.cli import app
from pipelines import storage
from pipelines.engines.local import LocalEngine
from pipelines.output import OutputError, OutputLayout, PartWriter
from pipelines.run import run_pipeline
from pipelines.shards import ShardWriter
from pipelines.spec import PipelineSpec, SpecError, load_spec
from tests.pipelines.test_generators import _images

RECIPE = {"reader": {"part_size": 5}, "stages": [{"op": "decode"}], "shards": {"max_samples": 2},
          "engine": {"name": "local", "workers": 0}}
SPEC = PipelineSpec.model_validate(RECIPE)
OTHER = PipelineSpec.model_validate({**RECIPE, "shards": {"max_samples": 3}})  # another fingerprint


def _run(inputs, out, spec=SPEC):
    return run_pipeline(spec, [str(i) for i in inputs], str(out), LocalEngine(spec.engine))


def _files(folder):
    """Every file under `folder` (relative path: bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def inputs(tmp_path):
    _images(tmp_path / "in", 12)
    _images(tmp_path / "other", 7, seed=5)
    return tmp_path / "in", tmp_path / "other"


def test_a_rerun_with_another_input_keeps_user_files_that_look_like_its_own(tmp_path, inputs):
    first, second = inputs
    out = tmp_path / "out"
    _run([first], out)
    before = _files(out / "shards")
    mine = {
        "shards/99999-0000.tar": b"mine",  # named like a shard vlmdata writes
        "shards/00000-0000.mine.parquet": b"mine",  # named like a sidecar of a shard it wrote
        "_work/mystuff/keep.txt": b"keep",
        "_work/tmp/99999-0000.tar": b"mine",
        "_work/parts/notes.txt": b"mine",
    }
    for rel, data in mine.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    for spec, source in ((SPEC, second), (SPEC, first)):  # another fingerprint, and a resume of the same one
        with pytest.raises(OutputError, match="did not write") as refused:
            _run([source], out, spec)
        for shown in ("shards/99999-0000.tar", "shards/00000-0000.mine.parquet", "_work/mystuff/"):
            assert shown in str(refused.value)
        assert all((out / rel).read_bytes() == data for rel, data in mine.items())
        assert {k: v for k, v in _files(out / "shards").items() if k not in ("99999-0000.tar",
                "00000-0000.mine.parquet")} == before  # nothing was deleted either
    for rel in mine:
        os.remove(out / rel)  # moved away: an empty folder of yours is still yours
    with pytest.raises(OutputError, match="_work/mystuff/"):
        _run([second], out)
    os.rmdir(out / "_work" / "mystuff")
    report = _run([second], out)
    assert report.parts_resumed == 0
    ref = tmp_path / "ref"
    _run([second], ref)
    assert _files(out / "shards") == _files(ref / "shards")  # the first run's shards are gone, exactly replaced
    assert (out / "ledger.parquet").read_bytes() == (ref / "ledger.parquet").read_bytes()
    assert not (out / "_work" / "mystuff").exists()


def test_prepare_itself_refuses_a_file_it_did_not_record(tmp_path, inputs):
    """check_safe runs before the lock is taken: prepare, under the lock, checks again before deleting anything."""
    out = tmp_path / "out"
    _run([inputs[0]], out)
    (out / "shards" / "00001-0007.tar").write_bytes(b"mine")
    with pytest.raises(OutputError, match="00001-0007.tar"):
        OutputLayout(str(out)).prepare("another-fingerprint")
    assert (out / "shards" / "00001-0007.tar").read_bytes() == b"mine"
    assert (out / "shards" / "00001-0000.tar").exists()


class Killed(Exception):
    """Stands for a run killed while it wrote a part."""


def test_a_run_killed_mid_part_resumes_over_its_own_half_written_files(tmp_path, inputs, monkeypatch):
    out = tmp_path / "out"
    real = pipelines.execute.write_part

    def killed_in_part_1(batches, layout, shards, part):
        if part != 1:
            return real(batches, layout, shards, part)
        writer = PartWriter(layout, shards, part)
        for batch in batches:
            writer.add(batch)
        raise Killed  # two shards of the part are in shards/, its third is open in _work/tmp; no ledger, no marker

    monkeypatch.setattr(pipelines.execute, "write_part", killed_in_part_1)
    with pytest.raises(Killed):
        _run([inputs[0]], out)
    monkeypatch.setattr(pipelines.execute, "write_part", real)
    assert (out / "shards" / "00001-0001.tar").exists() and (out / "_work" / "tmp" / "00001-0002.tar").exists()
    assert not (out / "_work" / "parts" / "00001.json").exists()
    # What a killed atomic write leaves: temporary names of files the run writes.
    for rel in ("shards/00001-0001.stats.json.tmp-999999", "ledger.parquet.tmp-999999",
                "_work/parts/00000.ledger.parquet.tmp-999999"):
        (out / rel).write_bytes(b"half")
    assert OutputLayout(str(out)).inventory().foreign == []

    report = _run([inputs[0]], out)  # the same fingerprint: a resume
    assert report.parts_resumed == 1 and report.parts_total == 3  # part 0 (parts run in order: 2 never started)
    ref = tmp_path / "ref"
    _run([inputs[0]], ref)
    assert _files(out / "shards") == _files(ref / "shards")
    assert (out / "ledger.parquet").read_bytes() == (ref / "ledger.parquet").read_bytes()
    assert not list(out.rglob("*.tmp-*")) and not list((out / "_work" / "tmp").iterdir())

    _run([inputs[0]], out, OTHER)  # another fingerprint: every file the killed attempt wrote is gone too
    other = tmp_path / "other-ref"
    _run([inputs[0]], other, OTHER)
    assert _files(out / "shards") == _files(other / "shards")


def _as_written_by_an_older_vlmdata(out):
    """What an output folder looked like before records: run.json with the fingerprint only, no part records."""
    run = out / "_work" / "run.json"
    run.write_text(json.dumps({"fingerprint": json.loads(run.read_text())["fingerprint"]}))
    for record in (out / "_work" / "parts").glob("*.written"):
        record.unlink()


def test_an_older_folder_without_records_is_read_by_its_part_markers(tmp_path, inputs):
    out = tmp_path / "out"
    _run([inputs[0]], out)
    _as_written_by_an_older_vlmdata(out)
    before = _files(out / "shards")
    (out / "shards" / "00009-0000.tar").write_bytes(b"mine")  # no marker lists it: a file of yours, or a lost part
    with pytest.raises(OutputError, match="00009-0000.tar.*older vlmdata"):
        _run([inputs[0]], out, OTHER)
    assert (out / "shards" / "00009-0000.tar").read_bytes() == b"mine"
    assert {k: v for k, v in _files(out / "shards").items() if k != "00009-0000.tar"} == before
    os.remove(out / "shards" / "00009-0000.tar")
    _run([inputs[0]], out, OTHER)  # the shards its markers list, their sidecars and the index go
    ref = tmp_path / "ref"
    _run([inputs[0]], ref, OTHER)
    assert _files(out / "shards") == _files(ref / "shards")
    assert json.loads((out / "_work" / "run.json").read_text())["record"] == 1


def test_a_resume_of_an_older_folder_records_what_it_found(tmp_path, inputs):
    out = tmp_path / "out"
    _run([inputs[0]], out)
    _as_written_by_an_older_vlmdata(out)
    report = _run([inputs[0]], out)
    assert report.parts_resumed == report.parts_total == 3
    files = json.loads((out / "_work" / "run.json").read_text())["files"]
    assert "shards/00000-0000.tar" in files and "shards/00002-0000.stats.json" in files
    assert OutputLayout(str(out)).inventory().foreign == []
    _run([inputs[0]], out, OTHER)  # by the records now: the old shards go
    ref = tmp_path / "ref"
    _run([inputs[0]], ref, OTHER)
    assert _files(out / "shards") == _files(ref / "shards")


def test_the_shard_writer_names_every_file_before_it_creates_it(tmp_path):
    named: list[str] = []

    def before_write(paths):
        assert not any(os.path.exists(p) for p in paths)
        named.extend(paths)

    writer = ShardWriter(str(tmp_path / "s"), str(tmp_path / "t"), "00000", 2, 1 << 30, before_write=before_write)
    for i in range(5):
        writer.write({"__key__": f"k{i}", "txt": b"x"}, {"emb": {"v": float(i)}})
    writer.close()
    created = {str(p) for p in tmp_path.rglob("*") if p.is_file()}
    assert len(created) == 9 and created <= set(named)  # 3 tars, their stats and embedding sidecars
    assert {os.path.basename(p) for p in named if "/t/" in p} == {"00000-0000.tar", "00000-0001.tar", "00000-0002.tar"}


def test_an_output_path_through_a_file_is_a_clear_error(tmp_path, inputs):
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile" / "sub", tmp_path / "afile" / "sub" / "deeper"):
        with pytest.raises(OutputError, match="afile is a file, not a folder"):
            _run([inputs[0]], out)
        result = CliRunner().invoke(app, ["curate", "--engine", "local", "-c", "configs/curate/base.yaml",
                                          "-i", str(inputs[0]), "-o", str(out)])
        assert result.exit_code == 2, result.output
        assert "afile is a file, not a folder" in result.output and "Traceback" not in result.output
    assert (tmp_path / "afile").read_text() == "x"


def test_an_output_folder_that_cannot_be_written_is_a_clear_error(tmp_path, inputs, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: os.fspath(p) != str(locked) and real_access(p, mode, **kw))
    with pytest.raises(OutputError, match="cannot write in .*locked"):
        _run([inputs[0]], locked / "out")
    monkeypatch.undo()

    def refuse(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(storage, "makedirs", refuse)  # what a read-only or foreign folder does despite os.access
    with pytest.raises(OutputError, match="cannot write the output folder .*Permission denied"):
        OutputLayout(str(tmp_path / "ro" / "out")).check_safe([str(inputs[0])])


@pytest.mark.parametrize("size", [0, -1])
def test_a_part_size_below_one_is_refused_before_anything_is_created(tmp_path, inputs, size):
    with pytest.raises(SpecError, match="greater than or equal to 1"):
        load_spec("configs/curate/base.yaml", {"reader.part_size": size})
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["curate", "--engine", "local", "-c", "configs/curate/base.yaml", "-i",
                                      str(inputs[0]), "-o", str(out), "--set", f"reader.part_size={size}"])
    assert result.exit_code == 2 and "part_size" in result.output and "Traceback" not in result.output
    assert not out.exists()
    for fine in ("auto", 1):
        assert load_spec("configs/curate/base.yaml", {"reader.part_size": fine}).reader.part_size == fine
