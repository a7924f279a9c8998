"""Spark engine: each pass runs per part inside `mapInArrow`; a global stage's reduce is a window over key columns."""

from __future__ import annotations

import json
import os
import resource
import sys
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from pipelines.execute import PassRunner
from pipelines.operator import GroupOperator
from pipelines.output import OutputLayout
from pipelines.readers.base import Part
from pipelines.spec import EngineConfig, PipelineSpec

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


def _parts_and_losers(batch: pa.RecordBatch) -> Iterator[tuple[Part, dict[str, str]]]:
    losers_col = batch.schema.get_field_index("losers")
    losers = batch.column(losers_col).to_pylist() if losers_col >= 0 else [None] * batch.num_rows
    for text, pairs in zip(batch.column("part").to_pylist(), losers, strict=True):
        yield Part.model_validate_json(text), {p["key"]: p["survivor"] for p in pairs or ()}


class SparkEngine:
    """Schedules passes over parts (one row per part) and reduces key columns natively; rows never cross the JVM."""

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
        runner = PassRunner(spec, layout.root)
        rows = [(p.id, p.model_dump_json()) for p in parts]
        # One part per partition: the parallelism is the number of parts, whatever its size.
        descriptors = spark.createDataFrame(
            spark.sparkContext.parallelize(rows, numSlices=len(parts)), "part_id int, part string"
        )
        frame: DataFrame = descriptors
        for k in range(runner.n_passes):
            last = k == runner.n_passes - 1

            def run_pass(batches: Iterator[pa.RecordBatch], k: int = k, last: bool = last) -> Iterator[pa.RecordBatch]:
                for batch in batches:
                    for part, losers in _parts_and_losers(batch):
                        for item in runner.run(k, part, losers):
                            if not last:
                                yield item
                                continue
                            rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                            yield pa.RecordBatch.from_pylist(
                                [{"part": part.id, "marker": json.dumps(item), "worker_maxrss_kb": rss_kb}],
                                schema=WRITE_RESULT,
                            )

            schema = WRITE_RESULT if last else runner.keys_schema(k)
            out = frame.mapInArrow(run_pass, from_arrow_schema(schema))
            if last:
                results = out.collect()
                break
            group = runner.passes[k][1]
            assert group is not None
            losers = self._reduce(out, group)
            frame = descriptors.join(losers, "part_id", "left").repartition(len(parts))
        markers = []
        for row in sorted(results, key=lambda r: r["part"]):
            marker = json.loads(row["marker"])
            marker["worker_maxrss_kb"] = row["worker_maxrss_kb"]
            markers.append(marker)
        return markers

    @staticmethod
    def _reduce(keys: DataFrame, op: GroupOperator) -> DataFrame:
        """Keyed reduce: rank rows within each group; every row but the first loses to it. Per part: its losers."""
        order = [F.col(c).desc() if desc else F.col(c).asc() for c, desc in op.order_columns]
        window = Window.partitionBy(op.group_column).orderBy(*order, F.col("key").asc())
        ranked = keys.select(
            "key", "part", F.row_number().over(window).alias("rank"), F.first("key").over(window).alias("survivor")
        )
        return (
            ranked.where(F.col("rank") > 1)
            .groupBy(F.col("part").alias("part_id"))
            .agg(F.collect_list(F.struct("key", "survivor")).alias("losers"))
        )
