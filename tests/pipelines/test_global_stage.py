from typing import Any

import pyarrow as pa

from pipelines.global_stage import PROBE, DedupOperator, dedup_in_process, explode


class _Probing(DedupOperator):
    """Rows bucket by `word`; each row also probes the buckets of its `probes` list. Everything in a bucket matches."""

    name = "probing"
    key_columns = ("word", "probes")

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch

    def buckets(self, keys: pa.RecordBatch, state: Any) -> list[list[str]]:
        return [[w] for w in keys.column("word").to_pylist()]

    def probes(self, keys: pa.RecordBatch, state: Any) -> list[list[str]]:
        return keys.column("probes").to_pylist()

    def drop_reason(self, survivor_key: str) -> str:
        return f"dup:{survivor_key}"


def _keys(rows):
    return pa.RecordBatch.from_pylist(rows, schema=pa.schema(
        [("key", pa.string()), ("part", pa.int32()), ("word", pa.string()), ("probes", pa.list_(pa.string()))]))


def test_probes_meet_bucket_members_but_never_each_other():
    keys = _keys([
        {"key": "a", "part": 0, "word": "x", "probes": ["z"]},
        {"key": "b", "part": 0, "word": "y", "probes": ["z"]},  # a and b only share a probed bucket: no pair
        {"key": "c", "part": 1, "word": "w", "probes": ["x"]},  # c probes a's bucket: c loses to a (smaller key)
    ])
    exploded = explode(_Probing(), None, keys).to_pylist()
    assert sorted((r["bucket"], r["key"], r[PROBE]) for r in exploded) == [
        ("w", "c", False), ("x", "a", False), ("x", "c", True), ("y", "b", False), ("z", "a", True), ("z", "b", True)]
    assert dedup_in_process(_Probing(), None, [keys]) == {"c": (1, "a")}
