"""Spark engine: map stages in `mapInArrow`, global stages as groupBy/agg plus a broadcast join, shards written by executors."""

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

from pipelines.operator import GroupOperator, Operator, apply_group, apply_map, ready
from pipelines.output import OutputLayout, write_parts
from pipelines.readers.base import Part, read_part
from pipelines.schema import conform, record_schema
from pipelines.spec import EngineConfig, PipelineSpec

SURVIVOR = "_survivor"
WRITE_RESULT = pa.schema([("part", pa.int32()), ("marker", pa.string()), ("worker_maxrss_kb", pa.int64())])

DEFAULT_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.python.worker.reuse": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.shuffle.partitions": "16",
    "spark.driver.memory": "4g",
}


def spark_session(config: EngineConfig, app_name: str = "vlmdata") -> SparkSession:
    """A session for `config.master`; the Python workers run this interpreter, so they import this project."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if config.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
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


def _spark_schema(schema: pa.Schema):
    return from_arrow_schema(schema)


def _map_fn(ops: list[Operator], schemas: list[pa.Schema]) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        live = [ready(op) for op in ops]
        for batch in batches:
            for op, schema in zip(live, schemas, strict=True):
                batch = apply_map(op, batch, schema)
            yield batch

    return run


class SparkEngine:
    """Builds one Spark plan for a pipeline: read → stages → write, with one Spark partition per input part."""

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

        def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                for text in batch.column("part").to_pylist():
                    yield from read_part(Part.model_validate_json(text), reader_cfg)

        columns: list[str] = []
        descriptors = spark.sparkContext.parallelize([(p.model_dump_json(),) for p in parts], numSlices=len(parts))
        df = spark.createDataFrame(descriptors, "part string").mapInArrow(read, _spark_schema(record_schema()))

        cached: list[DataFrame] = []
        pending: list[Operator] = []
        pending_schemas: list[pa.Schema] = []
        for op in [*spec.operators(), None]:
            if op is not None and not isinstance(op, GroupOperator):
                columns.extend(op.adds)
                pending.append(op)
                pending_schemas.append(record_schema(columns))
                continue
            if pending:  # fuse consecutive map operators into one Python pass
                df = df.mapInArrow(_map_fn(pending, pending_schemas), _spark_schema(pending_schemas[-1]))
                pending, pending_schemas = [], []
            if op is not None:
                columns.extend(op.adds)
                df = self._group_stage(df, op, record_schema(columns))
                cached.append(df)

        def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            layout_w = OutputLayout(root)
            for marker in write_parts(batches, layout_w, shard_cfg):
                rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                yield pa.RecordBatch.from_pylist(
                    [{"part": marker["part"], "marker": json.dumps(marker), "worker_maxrss_kb": rss_kb}],
                    schema=WRITE_RESULT,
                )

        rows = (
            df.sortWithinPartitions("part", "ord")
            .mapInArrow(write, _spark_schema(WRITE_RESULT))
            .collect()
        )
        for frame in cached:
            frame.unpersist()
        markers = []
        for row in sorted(rows, key=lambda r: r["part"]):
            marker = json.loads(row["marker"])
            marker["worker_maxrss_kb"] = row["worker_maxrss_kb"]
            markers.append(marker)
        return markers

    def _group_stage(self, df: DataFrame, op: GroupOperator, schema: pa.Schema) -> DataFrame:
        """map (group column) → keyed reduce (survivor per group) → apply, without collecting data on the driver."""
        df = df.mapInArrow(_map_fn([op], [schema]), _spark_schema(schema))
        # The reduce reads the mapped rows twice (survivors, then the join): keep them, not recompute them.
        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        g = op.group_column
        order = [F.negative(F.col(c)) if desc else F.col(c) for c, desc in op.order_columns]
        live = df.where(F.col("keep") & F.col(g).isNotNull()).select(g, "key", *[c for c, _ in op.order_columns])
        survivors = live.groupBy(g).agg(F.min(F.struct(*order, F.col("key").alias("_k"))).alias("_w"))
        survivors = survivors.select(g, F.col("_w._k").alias(SURVIVOR))
        losers = live.select(g, "key").join(survivors, g).where(F.col("key") != F.col(SURVIVOR)).select("key", SURVIVOR)
        joined = df.join(F.broadcast(losers), on="key", how="left")

        def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            live_op = ready(op)
            for batch in batches:
                survivor = batch.column(batch.schema.get_field_index(SURVIVOR)).to_pylist()
                yield conform(apply_group(live_op, batch, survivor), schema)

        return joined.mapInArrow(apply, _spark_schema(schema))
