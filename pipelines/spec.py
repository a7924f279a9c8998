"""The pipeline spec: one YAML recipe = reader + stages + shards + engine, validated by pydantic."""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.operator import Operator, build_operator
from pipelines.plan import check_columns
from pipelines.readers.base import InputError, ReaderConfig, source_fields, sources
from pipelines.shards import ShardConfig


class StageSpec(BaseModel):
    """One stage: `op` names a registered operator; every other key is that operator's config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: str = Field(description="Registered operator name (see `vlmdata ops`).")
    config: dict[str, Any] = Field(default_factory=dict, description="The operator's config fields.")

    @model_validator(mode="before")
    @classmethod
    def _inline_config(cls, data: Any) -> Any:
        if isinstance(data, dict) and "config" not in data:
            data = dict(data)
            op = data.pop("op", None)
            return {"op": op, "config": data}
        return data


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["spark", "beam", "local"] = Field(
        "spark", description="Execution engine: spark (default; local[*] embedded or a cluster), beam, or local "
        "(an in-process pool over parts: no JVM, no Beam; for small inputs, operator authors and tests).")
    workers: int | None = Field(None, ge=0, description="local engine: worker processes (default: one per core; "
                                "0 = run in this process).")
    master: str = Field("local[*]", description="Spark master: local[N], local[N,retries], spark://host:port, yarn, k8s://…")
    conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark settings (spark.* keys).")
    task_retries: int = Field(3, ge=0, description="Times a failed task (a killed worker) is retried before the stage fails.")
    driver_reduce_rows: int = Field(
        50_000, ge=0,
        description="A reduce that groups key rows without comparing them (exact dedup, concept counts) runs in the "
        "driver process, as the local engine's does, when it has at most this many key rows: on Spark or Beam a "
        "distributed reduce costs seconds of jobs, shuffles and worker starts that a small run never repays (Spark's "
        "broadcast threshold, for a reduce). Same output either way; 0 = always on the engine.",
    )
    driver_compare_rows: int = Field(
        1_000, ge=0,
        description="The same for a reduce that compares rows within buckets (near and semantic dedup): its cost is "
        "the comparisons, which depend on the data (600 crops of a few photos took 11k template matches) and which "
        "the engine spreads over its cores, so only a small one runs in the driver. 0 = always on the engine.",
    )
    beam_options: list[str] = Field(
        default_factory=list,
        description="Beam pipeline flags, passed through unchanged (e.g. --runner=FlinkRunner --flink_master=host:8081); "
        "empty: DirectRunner, one process per core.",
    )


    def parallelism(self) -> int:
        """Cores the engine will run parts on, as far as the driver can tell (for sizing parts)."""
        import os
        import re

        cores = os.cpu_count() or 1
        if self.name == "local":
            return self.workers or cores
        if self.name == "spark":
            m = re.fullmatch(r"local\[(\*|\d+)(?:,\d+)?\]", self.master)
            if m:
                return cores if m.group(1) == "*" else int(m.group(1))
            return 1 if self.master == "local" else max(cores, 16)  # a cluster: plenty of parts
        return cores


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("curate", description="Name of the flow run.")
    reader: ReaderConfig = Field(default_factory=ReaderConfig)
    stages: list[StageSpec] = Field(default_factory=list, description="Operators, in order.")
    shards: ShardConfig = Field(default_factory=ShardConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)

    def operators(self) -> list[Operator]:
        return [build_operator(s.op, s.config) for s in self.stages]

    def preflight(self) -> None:
        """Every stage's driver-side check (models present, …), before any engine or flow run starts."""
        for i, op in enumerate(self.operators()):
            try:
                op.preflight()
            except Exception as exc:  # noqa: BLE001 - reported as a recipe error naming the stage
                raise SpecError(f"stage {i + 1} ({op.name}): {exc}") from exc

    def fingerprint(self, parts_json: str) -> str:
        """What decides the output: reader, stages, shards, the inputs and the code that runs them; never the engine.

        The code counts so that a run resumed after an upgrade of vlmdata (or of a plug-in operator) starts over
        instead of mixing parts made by two versions."""
        payload = json.dumps(
            {"spec": self.model_dump(mode="json", exclude={"engine", "name"}), "parts": parts_json,
             "code": code_identity(self.operators())},
            sort_keys=True,
        )
        return hashlib.sha1(payload.encode()).hexdigest()[:20]


def code_identity(ops: list[Operator]) -> str:
    """A hash of the source that decides the output: the `pipelines` and `filters` packages and each operator's
    module (plug-ins included)."""
    root = Path(__file__).resolve().parent
    files = {*root.rglob("*.py"), *(root.parent / "filters").rglob("*.py")}
    for op in ops:
        source = inspect.getsourcefile(type(op))
        if source:
            files.add(Path(source).resolve())
    digest = hashlib.sha1()
    for path in sorted(files):
        digest.update(str(path.relative_to(root.parent)).encode() if path.is_relative_to(root.parent) else path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class SpecError(ValueError):
    """A recipe that cannot be used; the message names the file and the field."""


def _set_path(data: dict[str, Any], dotted: str, value: Any, path: Path) -> None:
    """`--set a.b.2.c=v`: walk mappings by key and lists by index; anything else is a SpecError naming the key."""
    node: Any = data
    *head, last = dotted.split(".")
    walked = []
    for k in [*head, last]:
        where = ".".join(walked) or "the top level"
        if isinstance(node, list):
            if not k.isdigit():
                raise SpecError(f"{path}: --set {dotted}: {where} is a list; use an index (e.g. {where}.0)")
            i = int(k)
            if i >= len(node):
                raise SpecError(f"{path}: --set {dotted}: {where} has {len(node)} entries (indices 0..{len(node) - 1})")
            if k == last and len(walked) == len(head):
                node[i] = value
                return
            node = node[i]
        elif isinstance(node, dict):
            if k == last and len(walked) == len(head):
                node[k] = value
                return
            node = node.setdefault(k, {})
        else:
            raise SpecError(f"{path}: --set {dotted}: {where} is a {type(node).__name__} ({node!r}), not a mapping")
        walked.append(k)


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: no such config file") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a mapping (reader, stages, shards, engine)")
    for dotted, value in (overrides or {}).items():
        _set_path(data, dotted, value, path)
    try:
        spec = PipelineSpec.model_validate(data)
        ops = spec.operators()  # validates every operator config now, not on a worker later
        # Columns: with an explicit source, exactly what it provides; with auto, what any source could.
        formats = [spec.reader.format] if spec.reader.format != "auto" else sorted(sources())
        check_columns(ops, source_fields(formats))
    except ValidationError as exc:
        raise SpecError(f"{path}: {exc}") from exc
    except (ValueError, InputError) as exc:
        raise SpecError(f"{path}: {exc}") from exc
    return spec
