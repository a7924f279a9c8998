"""Beam (DirectRunner, multi-process) and Spark run the same operators to the same bytes."""

import os

import pyarrow.parquet as pq

from pipelines.engines.beam import BeamEngine
from pipelines.engines.spark import SparkEngine
from pipelines.run import run_pipeline
from pipelines.spec import load_spec
from synth.demo_corpus import check_faults


def _tree(root):
    out = {}
    for name in sorted(os.listdir(os.path.join(root, "shards"))):
        with open(os.path.join(root, "shards", name), "rb") as f:
            out[name] = f.read()
    return out


def test_spark_and_beam_give_the_same_ledger_and_byte_identical_shards(spark, demo_corpus, tmp_path):
    root, manifest = demo_corpus
    inputs = [str(root / "corpus")]
    spark_spec = load_spec("configs/curate/base.yaml")
    beam_spec = load_spec("configs/curate/base.yaml", {"engine.name": "beam"})
    run_pipeline(spark_spec, inputs, str(tmp_path / "spark"), SparkEngine(spark_spec.engine, spark))
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


def test_beam_runner_options_pass_through_unchanged():
    spec = load_spec("configs/curate/base.yaml", {
        "engine.name": "beam",
        "engine.beam_options": ["--runner=FlinkRunner", "--flink_master=localhost:8081", "--parallelism=4"],
    })
    opts = BeamEngine(spec.engine).options().get_all_options()
    assert opts["runner"] == "FlinkRunner" and opts["flink_master"] == "localhost:8081" and opts["parallelism"] == 4
    default = BeamEngine(load_spec("configs/curate/base.yaml", {"engine.name": "beam"}).engine).options()
    assert default.get_all_options()["direct_running_mode"] == "multi_processing"
