"""The local engine: a warm pool started before the first pass gives the same bytes as running in this process."""

import os

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
