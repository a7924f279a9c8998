"""Failures: a bad batch becomes ledger errors, a killed worker is retried, the run always finishes."""

import os

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.engines.spark import SparkEngine, master_with_retries
from pipelines.operator import Operator, apply_map, with_verdicts
from pipelines.run import run_pipeline
from pipelines.schema import record_schema
from pipelines.spec import load_spec
from tests.images import jpeg_bytes
from tests.ops import FailOnWord


def _batch(texts):
    rows = [
        {"key": f"k{i}", "image": b"x", "text": t, "source": f"s{i}", "dataset": "d", "meta": "{}", "part": 0,
         "ord": i, "keep": True, "error": False}
        for i, t in enumerate(texts)
    ]
    return pa.RecordBatch.from_pylist(rows, schema=record_schema())


def test_a_batch_that_fails_deterministically_errors_only_the_rows_that_fail_alone():
    texts = [f"caption {i}" for i in range(16)]
    texts[3] = texts[11] = "a poison caption"
    rows = apply_map(FailOnWord(word="poison"), _batch(texts), record_schema()).to_pylist()
    assert [r["key"] for r in rows] == [f"k{i}" for i in range(16)]
    bad = [r for r in rows if not r["keep"]]
    assert [r["key"] for r in bad] == ["k3", "k11"]
    assert all(r["error"] and r["stage"] == "fail_on_word" for r in bad)
    assert bad[0]["reason"] == "fail_on_word_failed:ValueError: cannot handle captions with 'poison'"


class FlakyOnce(Operator):
    name = "flaky_once"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("transient")
        return with_verdicts(batch, [True] * batch.num_rows, [None] * batch.num_rows)


def test_a_transient_failure_is_retried_once():
    op = FlakyOnce()
    rows = apply_map(op, _batch(["a", "b", "c"]), record_schema()).to_pylist()
    assert all(r["keep"] for r in rows) and op.calls == 2


def test_local_masters_get_task_retries():
    assert master_with_retries("local[2]", 3) == "local[2,4]"
    assert master_with_retries("local[*]", 1) == "local[*,2]"
    assert master_with_retries("local[2]", 0) == "local[2]"
    assert master_with_retries("spark://h:7077", 3) == "spark://h:7077"


def _folder(tmp_path, n=12, poison=()):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(n):
        (src / f"{i:02d}.jpg").write_bytes(jpeg_bytes((80, 60), seed=i))
        (src / f"{i:02d}.txt").write_text("a poison caption" if i in poison else f"a fine caption {i}")
    return src


def test_spark_retries_a_killed_worker_and_records_failing_rows(spark, tmp_path):
    src = _folder(tmp_path, poison={4})
    flag = tmp_path / "killed"
    spec = load_spec(
        "configs/curate/base.yaml",
        {
            "reader.part_size": 4,
            "stages": [
                {"op": "decode"},
                {"op": "tests.ops:KillWorkerOnce", "flag": str(flag)},
                {"op": "tests.ops:FailOnWord", "word": "poison"},
                {"op": "exact_dedup"},
            ],
        },
    )
    report = run_pipeline(spec, [str(src)], str(tmp_path / "out"), SparkEngine(spec.engine, spark))
    assert flag.exists()  # a worker really died
    assert report.stats["status"] == {"kept": 11, "dropped": 0, "error": 1}
    ledger = pq.read_table(tmp_path / "out" / "ledger.parquet").to_pylist()
    (bad,) = [r for r in ledger if r["status"] == "error"]
    assert bad["source"].endswith("04.jpg") and bad["reason"].startswith("fail_on_word_failed:ValueError")
    assert len(os.listdir(tmp_path / "out" / "shards")) > 0
