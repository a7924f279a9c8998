"""Spark engine: operators run inside `mapInArrow` passes; a global stage is a groupBy/agg plus a broadcast join."""

from __future__ import annotations

import json
import os
import resource
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from pipelines.operator import GroupOperator
from pipelines.output import OutputLayout, write_parts
from pipelines.plan import Step, plan_passes, run_steps
from pipelines.readers.base import Part, read_part
from pipelines.schema import record_schema
from pipelines.spec import EngineConfig, PipelineSpec

SURVIVOR = "_survivor"
WRITE_RESULT = pa.schema([("part", pa.int32()), ("marker", pa.string()), ("worker_maxrss_kb", pa.int64())])

DEFAULT_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.python.worker.reuse": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.shuffle.partitions": "8",
    "spark.driver.memory": "4g",
}


def spark_session(config: EngineConfig, app_name: str = "vlmdata") -> SparkSession:
    """A session for `config.master`; the Python workers run this interpreter, so they import this project."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if config.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master(config.master).appName(app_name)
    conf = dict(DEFAULT_CONF)
    if config.master.startswith(("local", "spark://127.", "spark://localhost")):
        # Everything on this host: bind to loopback so no network interface is needed.
        conf.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    conf.update(config.conf)
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _python_pass(
    steps: list[Step],
    read: Callable[[str], Iterator[pa.RecordBatch]] | None = None,
    write: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]] | None = None,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """One Python pass over a Spark partition: optionally read parts, run steps, optionally write shards."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        if read is not None:
            batches = (b for batch in batches for text in batch.column("part").to_pylist() for b in read(text))
        out = run_steps(steps, batches, survivor_column=SURVIVOR)
        yield from write(out) if write is not None else out

    return run


class SparkEngine:
    """One Spark plan per pipeline; one Spark partition per input part, so shards follow input order."""

    name = "spark"

    def __init__(self, config: EngineConfig | None = None, session: SparkSession | None = None):
        self.config = config or EngineConfig()
        self._session = session

    @property
    def session(self) -> SparkSession:
        if self._session is None:
            self._session = spark_session(self.config)
        return self._session

    def run(self, spec: PipelineSpec, parts: list[Part], layout: OutputLayout) -> list[dict[str, Any]]:
        spark = self.session
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(spec.reader.batch_size))
        reader_cfg, shard_cfg, root = spec.reader, spec.shards, layout.root

        def read(text: str) -> Iterator[pa.RecordBatch]:
            return read_part(Part.model_validate_json(text), reader_cfg)

        def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for marker in write_parts(batches, OutputLayout(root), shard_cfg):
                rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                yield pa.RecordBatch.from_pylist(
                    [{"part": marker["part"], "marker": json.dumps(marker), "worker_maxrss_kb": rss_kb}],
                    schema=WRITE_RESULT,
                )

        passes = plan_passes(spec.operators())
        descriptors = spark.sparkContext.parallelize([(p.model_dump_json(),) for p in parts], numSlices=len(parts))
        df: DataFrame = spark.createDataFrame(descriptors, "part string")
        cached: list[DataFrame] = []
        for i, (steps, group) in enumerate(passes):
            last = i == len(passes) - 1
            fn = _python_pass(steps, read=read if i == 0 else None, write=write if last else None)
            schema = WRITE_RESULT if last else steps[-1].schema if steps else record_schema()
            df = df.mapInArrow(fn, from_arrow_schema(schema))
            if group is not None:
                df = self._reduce(df, group)
                cached.append(df)
        rows = df.collect()
        for frame in cached:
            frame.unpersist()
        markers = []
        for row in sorted(rows, key=lambda r: r["part"]):
            marker = json.loads(row["marker"])
            marker["worker_maxrss_kb"] = row["worker_maxrss_kb"]
            markers.append(marker)
        return markers

    @staticmethod
    def _reduce(df: DataFrame, op: GroupOperator) -> DataFrame:
        """Keyed reduce of a global stage: the survivor of each group, joined back as a `_survivor` column."""
        # The mapped rows are read twice (survivors, then the join): keep them rather than recompute them.
        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        g = op.group_column
        order = [F.negative(F.col(c)) if desc else F.col(c) for c, desc in op.order_columns]
        live = df.where(F.col("keep") & F.col(g).isNotNull()).select(g, "key", *[c for c, _ in op.order_columns])
        survivors = live.groupBy(g).agg(F.min(F.struct(*order, F.col("key").alias("_k"))).alias("_w"))
        survivors = survivors.select(g, F.col("_w._k").alias(SURVIVOR))
        losers = live.select(g, "key").join(survivors, g).where(F.col("key") != F.col(SURVIVOR)).select("key", SURVIVOR)
        # Only the losers travel (broadcast); the big side streams in its partition order, so order is kept.
        return df.join(F.broadcast(losers), on="key", how="left")
