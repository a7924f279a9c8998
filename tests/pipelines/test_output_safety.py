"""A run never deletes or overwrites what it did not write, one run per output folder, unreadable inputs are loud."""

from __future__ import annotations

import pytest

from pipelines.engines.local import LocalEngine
from pipelines.output import OutputError, OutputLayout
from pipelines.run import run_pipeline
from pipelines.spec import PipelineSpec
from tests.pipelines.test_generators import _images

SPEC = PipelineSpec.model_validate({"stages": [{"op": "decode"}], "engine": {"name": "local", "workers": 0}})


def _run(inputs, out, spec=SPEC):
    return run_pipeline(spec, [str(i) for i in inputs], str(out), LocalEngine(spec.engine))


def test_an_input_inside_the_output_folder_is_refused_and_left_alone(tmp_path):
    _images(tmp_path / "in", 6)
    _run([tmp_path / "in"], tmp_path / "x")
    shards = sorted((tmp_path / "x" / "shards").iterdir())
    before = {p.name: p.read_bytes() for p in shards}
    with pytest.raises(OutputError, match="inside the output folder"):
        _run([tmp_path / "x" / "shards"], tmp_path / "x")
    assert {p.name: p.read_bytes() for p in (tmp_path / "x" / "shards").iterdir()} == before


def test_an_output_folder_inside_an_input_is_refused(tmp_path):
    _images(tmp_path / "loop", 6)
    with pytest.raises(OutputError, match="inside the input"):
        _run([tmp_path / "loop"], tmp_path / "loop" / "out")
    assert not (tmp_path / "loop" / "out").exists()


def test_foreign_files_are_never_deleted(tmp_path):
    _images(tmp_path / "in", 6)
    out = tmp_path / "out"
    _run([tmp_path / "in"], out)
    notes = out / "shards" / "my_notes.txt"
    notes.write_text("mine")
    changed = PipelineSpec.model_validate({**SPEC.model_dump(), "shards": {"max_samples": 2}})
    with pytest.raises(OutputError, match="shards/my_notes.txt"):
        _run([tmp_path / "in"], out, changed)  # a new fingerprint would have wiped shards/ before
    assert notes.read_text() == "mine"
    notes.unlink()
    report = _run([tmp_path / "in"], out, changed)  # now only vlmdata's files are there: the rerun replaces them
    assert report.stats["shards"]["count"] == len(list((out / "shards").glob("*.tar"))) == 3


def test_a_folder_holding_files_vlmdata_did_not_write_is_refused(tmp_path):
    _images(tmp_path / "in", 6)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(OutputError, match="thesis.tex"):
        _run([tmp_path / "in"], tmp_path / "home")
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        _run([tmp_path / "in"], tmp_path / "afile")


def test_one_run_per_output_folder(tmp_path):
    _images(tmp_path / "in", 6)
    layout = OutputLayout(str(tmp_path / "out"))
    with layout.lock():
        with pytest.raises(OutputError, match="another run is writing"):
            _run([tmp_path / "in"], tmp_path / "out")
    _run([tmp_path / "in"], tmp_path / "out")  # released: the run goes ahead


def test_an_input_that_cannot_be_read_at_all_is_reported(tmp_path):
    _images(tmp_path / "in", 6)
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"this is not a tar archive at all" * 40)
    report = _run([tmp_path / "in", broken], tmp_path / "out")
    assert report.stats["unreadable_inputs"] == [str(broken)]
    assert report.stats["sources"] == {str(tmp_path / "in"): "folder", str(broken): "webdataset"}
