"""A worker that outlives a run (the Beam and local engines' pools) reads each version of the count reduce's
result, not the first one it cached."""

from __future__ import annotations

import multiprocessing

from pipelines.execute import PassRunner
from pipelines.run import plan
from pipelines.spec import PipelineSpec
from tests.pipelines.test_generators import _images


def test_counts_are_reread_when_a_later_run_rewrites_them(tmp_path):
    _images(tmp_path / "in", 20)
    spec = PipelineSpec.model_validate({"stages": [{"op": "decode"}], "engine": {"name": "local", "workers": 0}})
    parts, fingerprint = plan(spec, [str(tmp_path / "in")])
    first = PassRunner.for_parts(spec, str(tmp_path / "out"), parts)
    first.layout.prepare(fingerprint)
    first.write_counts(0, ["cat", "dog"], [3, 1])
    assert first.counts(0) == {"cat": 3, "dog": 1}
    # a second run into the same folder: its driver (another process) writes the reduce's result
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_write_counts, args=(spec, str(tmp_path / "out"), parts))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert first.counts(0) == {"cat": 5, "bird": 2}


def _write_counts(spec, root, parts) -> None:
    PassRunner.for_parts(spec, root, parts).write_counts(0, ["cat", "bird"], [5, 2])
