"""Spark engine: a pass is one `mapInArrow` over part descriptors; a reduce is a window over the key columns."""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import sys
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from pipelines.engines import jvm_archive
from pipelines.execute import PassRunner
from pipelines.global_stage import (
    BUCKET,
    CANDIDATE_SCHEMA,
    LOSER_SCHEMA,
    PROBE,
    CountOperator,
    DedupOperator,
    best_survivor,
    bucket_candidates,
    bucket_schema,
    explode,
)
from pipelines.readers.base import Part
from pipelines.spec import EngineConfig

RESULT = pa.schema([("part", pa.int32()), ("result", pa.string()), ("worker_maxrss_kb", pa.int64())])
REDUCED = pa.schema([("part", pa.int32()), ("losers", pa.int64())])

DEFAULT_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.python.worker.reuse": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.shuffle.partitions": "8",
    "spark.driver.memory": "4g",
}
# An embedded (local[N]) driver only schedules tasks and reduces key columns: its JIT's optimising tier and parallel
# GC threads cost more CPU than they save (measured: JVM CPU per 2,000-image run 4.1 → 1.7 s, taken from the Python
# workers on the same cores). Any `engine.conf` entry overrides these.
JAVA_OPTIONS = "spark.driver.extraJavaOptions"
LOCAL_CONF = {
    JAVA_OPTIONS: "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
}


def master_with_retries(master: str, retries: int) -> str:
    """local[N] runs every task once; local[N,F] retries a failed task (a killed worker) up to F-1 times."""
    m = re.fullmatch(r"local\[(\*|\d+)\]", master)
    if m and retries > 0:
        return f"local[{m.group(1)},{retries + 1}]"
    if master == "local" and retries > 0:
        return f"local[1,{retries + 1}]"
    return master


def session_conf(config: EngineConfig, java_options: str | None = None) -> dict[str, str]:
    """The Spark settings of a session for `config`: the defaults, `config.conf` over them, then the driver JVM's
    `java_options` (default: this environment's class-data archive, `jvm_archive`) added to whatever JVM options
    that leaves, unless those already name a shared archive (a user's own CDS settings win)."""
    conf = dict(DEFAULT_CONF)
    conf["spark.task.maxFailures"] = str(config.task_retries + 1)
    if config.master.startswith("local"):
        conf.update(LOCAL_CONF)
        conf["spark.sql.shuffle.partitions"] = str(config.parallelism())  # key rows are small: one task per core
    if config.master.startswith(("local", "spark://127.", "spark://localhost")):
        # Everything on this host: bind to loopback so no network interface is needed. The workers run this
        # interpreter, where this project is importable: PySpark's daemon from it imports the installed pyspark, not
        # Spark's zips of sources (`spark_daemon`). A remote cluster's workers keep PySpark's own daemon.
        conf.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                     "spark.python.daemon.module": "pipelines.engines.spark_daemon"})
    conf.update(config.conf)
    extra = jvm_archive.java_options() if java_options is None else java_options
    current = conf.get(JAVA_OPTIONS, "")
    if extra and "SharedArchiveFile" not in current and "Xshare" not in current:
        conf[JAVA_OPTIONS] = f"{current} {extra}".strip()
    return conf


def spark_session(config: EngineConfig, app_name: str = "vlmdata", java_options: str | None = None) -> SparkSession:
    """A session for `config.master`; the Python workers run this interpreter, so they import this project.

    The driver's JVM maps this environment's class-data archive when one was built (`jvm_archive`): its start then
    costs about 10 s less CPU. `java_options` replaces that (the archive's own recording run passes its flag)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if config.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    master = master_with_retries(config.master, config.task_retries)
    conf = session_conf(config, java_options)
    launch_driver(master, app_name, conf)
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


JVM_LOG = logging.getLogger("vlmdata.jvm")
_JVM_TROUBLE = re.compile(r"\b(ERROR|FATAL|SEVERE)\b|^Error|Exception in thread|fatal error|OutOfMemoryError")


def launch_driver(master: str, app_name: str, conf: dict[str, str]) -> None:
    """Start the driver's JVM, unless this process has one, with its console output sent to the `vlmdata.jvm`
    logger (a run's OUT/run.log) instead of the terminal: log4j's start-up banner, the JDK's incubator-module notice
    and Hadoop's native-library warning are not a user's business on every run. Lines that report trouble (ERROR,
    FATAL, an uncaught exception, a JVM crash) are logged as warnings, so a console still shows them."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ:
        return  # this process has a JVM already (a stopped session's too): the next context reuses it
    spark_conf = SparkConf().setMaster(master).setAppName(app_name).setAll(list(conf.items()))
    # Our own pipe, read from before the JVM starts: a JVM that fails to start still has its reason read and logged.
    read_end, write_end = os.pipe()
    tail: deque[str] = deque(maxlen=20)
    reader = threading.Thread(target=_forward_jvm_output, args=(os.fdopen(read_end, "rb"), tail),
                              name="vlmdata-jvm-log", daemon=True)
    reader.start()
    try:
        gateway = launch_gateway(spark_conf, popen_kwargs={"stdout": write_end, "stderr": write_end})
    except Exception as exc:
        os.close(write_end)
        reader.join(timeout=10)  # the JVM is gone: its last words are in the pipe
        said = " | ".join(tail) or "no output"
        raise RuntimeError(f"the Spark driver's JVM did not start ({master}): {said}") from exc
    os.close(write_end)
    SparkContext(conf=spark_conf, gateway=gateway)


def _forward_jvm_output(stream: Any, tail: deque[str]) -> None:
    with stream:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                tail.append(line)
                JVM_LOG.log(logging.WARNING if _JVM_TROUBLE.search(line) else logging.INFO, "%s", line)


class SparkEngine:
    """Schedules passes (one row per part, one part per task) and reduces key columns natively."""

    name = "spark"

    def __init__(self, config: EngineConfig | None = None, session: SparkSession | None = None):
        self.config = config or EngineConfig()
        self._session = session
        self._owned = False  # stopped by close() only when this engine started it

    @property
    def session(self) -> SparkSession:
        if self._session is None:
            from pyspark import SparkContext

            # getOrCreate hands back a session someone else in this process started: that one is not ours to stop
            self._owned = SparkContext._active_spark_context is None
            self._session = spark_session(self.config)
        return self._session

    def close(self) -> None:
        """Stop the session this engine started (not one it was given): a cluster's application ends with the run,
        not when the Python process exits. The JVM stays up for the next session in this process."""
        if self._session is not None and self._owned:
            self._session.stop()
            self._session, self._owned = None, False

    def _descriptors(self, parts: list[Part]) -> DataFrame:
        """One row (the part's index) per part, one part per partition: the parallelism is the number of parts,
        whatever their size. A JVM-side range, not a Python RDD: each task then starts one Python worker, not two
        (the parts themselves reach the tasks as a broadcast, read once per worker, not in every task's closure)."""
        return self.session.range(len(parts), numPartitions=max(1, len(parts)))

    def run_pass(self, runner: PassRunner, parts: list[Part], k: int) -> list[dict[str, Any]]:
        descriptors = self._descriptors(parts)
        shared = self.session.sparkContext.broadcast(parts)  # a closure holding them is unpickled per task

        def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                for i in batch.column("id").to_pylist():
                    part = shared.value[i]
                    result = runner.run(k, part)
                    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                    yield pa.RecordBatch.from_pylist(
                        [{"part": part.id, "result": json.dumps(result), "worker_maxrss_kb": rss_kb}], schema=RESULT
                    )

        try:
            results = descriptors.mapInArrow(run, from_arrow_schema(RESULT)).collect()
        finally:
            shared.destroy()
        out = []
        for row in sorted(results, key=lambda r: r["part"]):
            result = json.loads(row["result"])
            result["worker_maxrss_kb"] = row["worker_maxrss_kb"]
            out.append(result)
        return out

    def reduce(self, runner: PassRunner, parts: list[Part], k: int) -> int:
        """The global stage's keyed reduce over the key columns pass `k` left; returns rows affected."""
        op = runner.group(k)
        ids = [p.id for p in parts]  # all a task needs of its part
        keys = self._descriptors(parts).mapInArrow(
            lambda batches: (b for batch in batches for i in batch.column("id").to_pylist()
                             for b in runner.read_keys(k, ids[i])),
            from_arrow_schema(runner.keys_schema(k)),
        )
        if isinstance(op, CountOperator):
            counts = (keys.select(F.explode(F.array_distinct(F.col(op.entries_column))).alias("entry"))
                      .groupBy("entry").count().collect())
            runner.write_counts(k, [r["entry"] for r in counts], [r["count"] for r in counts])
            return len(counts)
        assert isinstance(op, DedupOperator)
        if not op.compares_rows:
            return self._write_losers(runner, k, self._exact_losers(keys, op))
        state = runner.fit_state(k, parts)
        schema = runner.keys_schema(k)
        exploded = keys.mapInArrow(lambda bs: (explode(op, state, b) for b in bs), from_arrow_schema(bucket_schema(schema)))
        # `global_stage.comparable` on the JVM side: most LSH buckets hold one row or probes only. Dropped natively,
        # they cost no Python call each (the demo's crop search: 45k of 48k buckets; its reduce 169 -> 27 s under
        # load, same losers).
        within = Window.partitionBy(BUCKET)
        exploded = (exploded.withColumn("_rows", F.count(F.lit(1)).over(within))
                    .withColumn("_entries", F.count(F.when(~F.col(PROBE), 1)).over(within))
                    .where((F.col("_rows") > 1) & (F.col("_entries") > 0)).drop("_rows", "_entries"))
        candidates = exploded.groupBy(BUCKET).applyInArrow(
            lambda table: bucket_candidates(op, state, table), from_arrow_schema(CANDIDATE_SCHEMA)
        )
        losers = candidates.groupBy("key").applyInArrow(best_survivor, from_arrow_schema(LOSER_SCHEMA))
        return self._write_losers(runner, k, losers)

    @staticmethod
    def _exact_losers(keys: DataFrame, op: DedupOperator) -> DataFrame:
        """Exact buckets, natively: rank rows in each bucket as `op.rank` does; all but the first lose to it."""
        order = [F.col(c).desc_nulls_last() if desc else F.col(c).asc_nulls_last()
                 for c, desc in op.order_columns if c in keys.columns]
        window = Window.partitionBy(op.bucket_column).orderBy(*order, F.col("key").asc())
        ranked = keys.select("key", "part", F.row_number().over(window).alias("rank"),
                             F.first("key").over(window).alias("survivor"))
        return ranked.where(F.col("rank") > 1).select("key", "part", "survivor")

    @staticmethod
    def _write_losers(runner: PassRunner, k: int, losers: DataFrame) -> int:
        by_part = losers.groupBy("part").agg(F.collect_list(F.struct("key", "survivor")).alias("losers"))

        def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                for part, pairs in zip(batch.column("part").to_pylist(), batch.column("losers").to_pylist(), strict=True):
                    runner.write_losers(k, part, [(x["key"], x["survivor"]) for x in pairs])
                    yield pa.RecordBatch.from_pylist([{"part": part, "losers": len(pairs)}], schema=REDUCED)

        return sum(r["losers"] for r in by_part.mapInArrow(write, from_arrow_schema(REDUCED)).collect())
