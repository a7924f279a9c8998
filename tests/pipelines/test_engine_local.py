"""The local engine: a warm pool started before the first pass gives the same bytes as running in this process."""

import os

import pytest

from pipelines.engines.local import LocalEngine, _ready
from pipelines.run import run_pipeline
from pipelines.spec import PipelineSpec
from tests.pipelines.test_generators import _images

RECIPE = {"reader": {"part_size": 5}, "stages": [{"op": "decode"}, {"op": "heuristics"}, {"op": "exact_dedup"}]}


def _shards(root):
    folder = os.path.join(root, "shards")
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def test_warm_up_starts_every_worker_and_the_run_matches_in_process(tmp_path):
    _images(tmp_path / "in", 17)
    spec = PipelineSpec.model_validate({**RECIPE, "engine": {"name": "local", "workers": 2}})
    engine = LocalEngine(spec.engine)
    try:
        engine.warm_up(spec)
        pool = engine._pool
        assert pool is not None
        assert len({pool.submit(_ready).result() for _ in range(6)}) <= 2
        assert len(pool._processes) == 2  # both workers up before any pass
        engine.warm_up(spec)  # idempotent: the same pool
        assert engine._pool is pool
        run_pipeline(spec, [str(tmp_path / "in")], str(tmp_path / "pool"), engine, close=False)
        assert engine._pool is pool  # the passes ran on the warmed workers
    finally:
        engine.close()
    plain = PipelineSpec.model_validate({**RECIPE, "engine": {"name": "local", "workers": 0}})
    inproc = LocalEngine(plain.engine)
    inproc.warm_up(plain)  # a no-op without workers
    assert inproc._pool is None
    run_pipeline(plain, [str(tmp_path / "in")], str(tmp_path / "plain"), inproc)
    assert _shards(tmp_path / "pool") == _shards(tmp_path / "plain")
    assert open(tmp_path / "pool" / "ledger.parquet", "rb").read() == open(tmp_path / "plain" / "ledger.parquet", "rb").read()


def test_a_part_drops_the_spill_it_consumed_and_a_resume_does_not_redo_it(tmp_path):
    from pipelines import storage
    from pipelines.execute import PassRunner
    from pipelines.run import plan, process, run_reduce

    _images(tmp_path / "in", 17)
    spec = PipelineSpec.model_validate({**RECIPE, "engine": {"name": "local", "workers": 0}})
    engine = LocalEngine(spec.engine)
    parts, fingerprint = plan(spec, [str(tmp_path / "in")])
    out = str(tmp_path / "cut")
    runner = PassRunner.for_parts(spec, out, parts)
    runner.layout.prepare(fingerprint)
    assert runner.n_passes == 2 and len(parts) >= 3
    engine.run_pass(runner, parts, 0)
    run_reduce(engine, runner, parts, 0)
    first, second = parts[0].id, parts[1].id
    engine.run_pass(runner, parts[:1], 1)  # the run dies after the write pass finished one part
    layout = runner.layout
    assert not storage.exists(layout.spill_path(0, first))  # consumed and committed: gone before the run ends
    assert storage.exists(layout.spill_path(0, second)) and not runner.part_done(1, second)
    assert runner.part_done(0, first) and runner.part_done(1, first)
    assert runner.run(0, parts[0]) == {"part": first, "resumed": True}  # a resume does not redo pass 0 for it
    assert not storage.exists(layout.spill_path(0, first))
    os.remove(layout.keys_path(0, second))  # a pass-0 output without its keys is no finished part
    assert not runner.part_done(0, second)
    engine.run_pass(runner, parts[1:2], 0)
    assert runner.part_done(0, second)
    report = process(engine, spec, parts, out, fingerprint)  # the resumed run finishes the rest
    assert report.stats["status"]["kept"] > 0
    run_pipeline(spec, [str(tmp_path / "in")], str(tmp_path / "whole"), LocalEngine(spec.engine))
    assert _shards(out) == _shards(tmp_path / "whole")
    assert open(os.path.join(out, "ledger.parquet"), "rb").read() == open(tmp_path / "whole" / "ledger.parquet", "rb").read()


@pytest.mark.parametrize("last_stage, lose_counts, passes", [
    ("exact_dedup", False, [1]), ("concept_balance", False, [1]), ("concept_balance", True, [0, 1])])
def test_a_rerun_of_a_finished_run_only_merges_again(tmp_path, last_stage, lose_counts, passes):
    """Its end dropped the earlier passes' spills: a rerun must not redo those passes and reduces to find every
    shard written (the write pass finds every part's marker). A count reduce's result, which the merge reads for the
    stats, is kept; without it (removed by hand) the rerun redoes the passes. The stats are the first run's."""
    _images(tmp_path / "in", 17)
    engine_cfg = {"name": "local", "workers": 0, "driver_reduce_rows": 0}  # every reduce through engine.reduce
    stages = [{"op": "decode"}, {"op": "heuristics"}, {"op": last_stage}]
    spec = PipelineSpec.model_validate({**RECIPE, "stages": stages, "engine": engine_cfg})
    first = run_pipeline(spec, [str(tmp_path / "in")], str(tmp_path / "out"), LocalEngine(spec.engine))
    ledger = open(tmp_path / "out" / "ledger.parquet", "rb").read()
    kept = sorted(p.relative_to(tmp_path / "out" / "_work").as_posix() for p in (tmp_path / "out" / "_work").rglob("*")
                  if p.is_file() and not p.parent.name == "parts" and p.name != "run.json")
    assert kept == (["reduce-0/counts.parquet"] if last_stage == "concept_balance" else [])
    if lose_counts:
        os.remove(tmp_path / "out" / "_work" / kept[0])
    engine = LocalEngine(spec.engine)
    ran, reduced = [], []
    run_pass, reduce = engine.run_pass, engine.reduce
    engine.run_pass = lambda runner, parts, k: ran.append(k) or run_pass(runner, parts, k)
    engine.reduce = lambda runner, parts, k: reduced.append(k) or reduce(runner, parts, k)
    again = run_pipeline(spec, [str(tmp_path / "in")], str(tmp_path / "out"), engine)
    assert first.parts_total > 1 and ran == passes and reduced == passes[:-1]
    assert again.parts_resumed == again.parts_total == first.parts_total
    assert open(tmp_path / "out" / "ledger.parquet", "rb").read() == ledger
    assert again.stats["status"] == first.stats["status"]
    assert again.stats.get("concepts") == first.stats.get("concepts")
    assert (last_stage == "concept_balance") == bool(first.stats.get("concepts", {}).get("before"))
