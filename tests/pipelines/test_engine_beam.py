"""The Beam engine's embedded worker pool: started once per engine, reused by every pass and reduce, revived when a
worker dies, and its pipelines give the local engine's bytes."""

import os
import signal

import pyarrow.parquet as pq
import pytest

from pipelines.engines.beam import BeamEngine
from pipelines.engines.local import LocalEngine
from pipelines.run import run_pipeline
from pipelines.spec import PipelineSpec
from tests.pipelines.test_generators import GEN_RECIPE, _images


def _tree(root) -> dict[str, bytes]:
    return {name: (root / "shards" / name).read_bytes() for name in sorted(os.listdir(root / "shards"))}


def _running(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A generating recipe (a pass, a dedup reduce, a pass) on 30 images, and the local engine's output for it."""
    root = tmp_path_factory.mktemp("beam-pool")
    _images(root / "in", 30, seed=11)
    spec = PipelineSpec.model_validate({**GEN_RECIPE, "engine": {"name": "local"}})
    run_pipeline(spec, [str(root / "in")], str(root / "local"), LocalEngine(spec.engine))
    return root, pq.read_table(root / "local" / "ledger.parquet"), _tree(root / "local")


def test_one_pool_runs_every_pass_and_reduce_of_several_runs_and_gives_the_local_bytes(generated):
    root, ledger, files = generated
    spec = PipelineSpec.model_validate({**GEN_RECIPE, "engine": {"name": "beam"}})
    engine = BeamEngine(spec.engine)
    assert engine.pool_pids() == []
    pids = []
    for name in ("beam-a", "beam-b"):  # 3 pipelines each (pass, reduce, pass): all on the same processes
        run_pipeline(spec, [str(root / "in")], str(root / name), engine, close=False)
        pids.append(engine.pool_pids())
        assert pq.read_table(root / name / "ledger.parquet").equals(ledger)
        assert _tree(root / name) == files
    assert pids[0] == pids[1] and len(pids[0]) == engine.workers
    assert all(pid != os.getpid() and _running(pid) for pid in pids[0])
    engine.close()
    assert engine.pool_pids() == [] and not any(_running(pid) for pid in pids[0])


def test_a_failed_pipeline_and_a_killed_worker_leave_the_pool_usable(generated, tmp_path):
    root, ledger, files = generated
    flag = tmp_path / "failed-once"
    recipe = {**GEN_RECIPE, "stages": [{"op": "decode"}, {"op": "tests.ops:FailSetupOnce", "flag": str(flag)},
                                       *GEN_RECIPE["stages"][1:]]}
    spec = PipelineSpec.model_validate({**recipe, "engine": {"name": "beam"}})
    engine = BeamEngine(spec.engine)
    try:
        with pytest.raises(Exception, match="setup failed on purpose"):
            run_pipeline(spec, [str(root / "in")], str(tmp_path / "out"), engine, close=False)
        before = engine.pool_pids()
        assert flag.exists() and all(_running(pid) for pid in before)
        os.kill(before[0], signal.SIGKILL)  # an OOM kill between pipelines: the next one gets a fresh process
        report = run_pipeline(spec, [str(root / "in")], str(tmp_path / "out"), engine, close=False)
        after = engine.pool_pids()
        assert after[0] != before[0] and after[1:] == before[1:]
        assert report.stats["engine"] == "beam"
        # The extra pass-through stage changes no row: the resumed run's shards are the local engine's.
        assert _tree(tmp_path / "out") == files
        got = pq.read_table(tmp_path / "out" / "ledger.parquet")
        assert got.num_rows == ledger.num_rows
        assert got.column("status").to_pylist() == ledger.column("status").to_pylist()
    finally:
        engine.close()


def _chatty(x: int) -> int:
    print("x" * 200_000)  # an operator that prints: more than a pipe holds, and nobody reads the workers' stdout
    return x * 2


def test_a_worker_that_prints_a_lot_does_not_block_its_pipeline(tmp_path):
    import apache_beam as beam

    engine = BeamEngine(PipelineSpec.model_validate({"engine": {"name": "beam"}}).engine)
    out = tmp_path / "doubled"
    try:
        with engine._pipeline() as pipeline:
            (pipeline | beam.Create(list(range(6)), reshuffle=True) | beam.Map(_chatty)
             | beam.combiners.ToList() | beam.Map(lambda xs: out.write_text(",".join(map(str, sorted(xs))))))
        assert out.read_text() == "0,2,4,6,8,10"
    finally:
        engine.close()
