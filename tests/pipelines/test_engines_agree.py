"""Local, Beam (its embedded worker pool) and Spark run the same operators to the same bytes."""

import logging
import os

import pyarrow.parquet as pq

from pipelines.engines.beam import BeamEngine
from pipelines.engines.local import LocalEngine
from pipelines.engines.spark import SparkEngine
from pipelines.run import run_pipeline
from pipelines.spec import PipelineSpec, load_spec
from synth.demo_corpus import check_faults
from tests.pipelines.test_generators import GEN_RECIPE, _images


def _tree(root):
    out = {}
    for name in sorted(os.listdir(os.path.join(root, "shards"))):
        with open(os.path.join(root, "shards", name), "rb") as f:
            out[name] = f.read()
    return out


def test_local_spark_and_beam_give_the_same_ledger_and_byte_identical_shards(spark, demo_corpus, tmp_path):
    root, manifest = demo_corpus
    inputs = [str(root / "corpus")]
    native = {"engine.driver_reduce_rows": 0, "engine.driver_compare_rows": 0}  # Spark's and Beam's own reduces, not the driver's
    spark_spec = load_spec("configs/curate/base.yaml", native)
    beam_spec = load_spec("configs/curate/base.yaml", {"engine.name": "beam", **native})
    local_spec = load_spec("configs/curate/base.yaml", {"engine.name": "local"})
    run_pipeline(spark_spec, inputs, str(tmp_path / "spark"), SparkEngine(spark_spec.engine, spark))
    run_pipeline(local_spec, inputs, str(tmp_path / "local"), LocalEngine(local_spec.engine))
    report = run_pipeline(beam_spec, inputs, str(tmp_path / "beam"), BeamEngine(beam_spec.engine))
    assert report.stats["engine"] == "beam"
    spark_ledger = pq.read_table(tmp_path / "spark" / "ledger.parquet")
    beam_ledger = pq.read_table(tmp_path / "beam" / "ledger.parquet")
    assert beam_ledger.equals(spark_ledger)
    kept = {r["key"] for r in beam_ledger.to_pylist() if r["status"] == "kept"}
    assert len(kept) > 600
    assert check_faults(manifest, beam_ledger.to_pylist(), root / "corpus", [s.op for s in beam_spec.stages]) == []
    spark_files, beam_files = _tree(tmp_path / "spark"), _tree(tmp_path / "beam")
    assert sorted(spark_files) == sorted(beam_files) and len(spark_files) > 10
    assert spark_files == beam_files  # every tar, sidecar and index.json byte for byte
    assert pq.read_table(tmp_path / "local" / "ledger.parquet").equals(spark_ledger)
    assert _tree(tmp_path / "local") == spark_files


def test_the_three_engines_agree_on_a_randomised_input_with_a_plugin_generator(spark, tmp_path, caplog):
    """0, 1 and 3 children per input, one input that raises, a dedup after the generator: same ledger, same bytes,
    whether Spark and Beam reduce on the engine or (few key rows) in the driver."""
    _images(tmp_path / "in", 30, seed=11)
    recipe = {**GEN_RECIPE, "stages": [*GEN_RECIPE["stages"], {"op": "near_dedup"}]}
    outs, said = {}, {}
    for name, limit in (("local", 0), ("spark", 0), ("beam", 0), ("spark", 50_000), ("beam", 50_000)):
        limits = {"driver_reduce_rows": limit, "driver_compare_rows": limit // 50}  # 50,000 and 1,000: the defaults
        spec = PipelineSpec.model_validate({**recipe, "engine": {"name": name, **limits}})
        engine = {"local": lambda s: LocalEngine(s.engine), "spark": lambda s: SparkEngine(s.engine, spark),
                  "beam": lambda s: BeamEngine(s.engine)}[name](spec)
        run = f"{name}-{limit}"
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="vlmdata"):
            run_pipeline(spec, [str(tmp_path / "in")], str(tmp_path / run), engine)
        outs[run] = (pq.read_table(tmp_path / run / "ledger.parquet"), _tree(tmp_path / run))
        said[run] = [r.getMessage() for r in caplog.records if "reduced in the driver" in r.getMessage()]
    ledger, files = outs["local-0"]
    rows = ledger.to_pylist()
    assert any(r["origin"] == "fan_out" and r["status"] == "kept" for r in rows)
    assert sum(1 for r in rows if r["status"] == "error") == 1
    for run in ("spark-0", "beam-0", "spark-50000", "beam-50000"):
        assert outs[run][0].equals(ledger), run
        assert outs[run][1] == files, run
    assert said["spark-0"] == said["beam-0"] == []
    # each reduce read the rows that reached its stage: those kept, and those dropped there or later
    globals_ = ["exact_dedup", "near_dedup"]
    reached = [sum(1 for r in rows if r["status"] == "kept" or (r["status"] == "dropped" and r["stage"] in globals_[k:]))
               for k in range(2)]
    assert reached[0] > reached[1] > 0
    expected = [f"reduce-0: {reached[0]} key rows (engine.driver_reduce_rows: 50000): reduced in the driver",
                f"reduce-1: {reached[1]} key rows (engine.driver_compare_rows: 1000): reduced in the driver"]
    assert said["spark-50000"] == said["beam-50000"] == expected


def test_beam_runner_options_pass_through_unchanged():
    spec = load_spec("configs/curate/base.yaml", {
        "engine.name": "beam",
        "engine.beam_options": ["--runner=FlinkRunner", "--flink_master=localhost:8081", "--parallelism=4"],
    })
    configured = BeamEngine(spec.engine)  # configured options hold for every pipeline, reduces included
    opts = configured.options().get_all_options()
    assert opts["runner"] == "FlinkRunner" and opts["flink_master"] == "localhost:8081"
    assert opts["parallelism"] == 4
    assert not configured.embedded and configured._pipeline().runner.__class__.__name__ == "FlinkRunner"
    assert configured.pool_pids() == []  # no embedded worker pool behind a configured runner
    default = BeamEngine(load_spec("configs/curate/base.yaml", {"engine.name": "beam"}).engine)
    assert default.embedded and default.options().get_all_options()["direct_num_workers"] == default.workers
