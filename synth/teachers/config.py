"""Which teacher a recipe uses, as data: an OpenAI-compatible endpoint or the project's model in process."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from synth.teachers.base import Teacher

INPROC = "inproc:"


class TeacherConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(
        description='"http://HOST:PORT/v1" for an OpenAI-compatible server (vLLM, SGLang, `vlmdata serve-model`), '
                    'or "inproc:PATH_OR_PRESET" for the project\'s model run in this process.')
    model: str | None = Field(None, description="Model name sent to the server; default: the one it serves.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key; unset "
                             "means no key (local servers). The key itself never goes into a recipe.")
    concurrency: int = Field(16, ge=1, description="Requests in flight at once (HTTP teachers).")
    retries: int = Field(3, ge=0, description="Retries after a 429/5xx/timeout/connection error.")
    backoff: float = Field(1.0, ge=0, description="First retry delay in seconds; doubles each retry.")
    timeout: float = Field(300.0, gt=0, description="Seconds one request may take.")
    device: str = Field("auto", description="In-process teachers: auto, cpu, cuda, cuda:N.")
    dtype: str = Field("auto", description="In-process teachers: auto, float32, bfloat16, float16.")
    max_batch_rows: int = Field(32, ge=1, description="In-process teachers: sequences generated together.")

    def build(self) -> Teacher:
        if self.endpoint.startswith(INPROC):
            return teacher_from_spec(self.endpoint, self.model, device=self.device, dtype=self.dtype,
                                     max_batch_rows=self.max_batch_rows)
        return teacher_from_spec(self.endpoint, self.model, api_key=os.environ.get(self.api_key_env, "none"),
                                 concurrency=self.concurrency, retries=self.retries, backoff=self.backoff,
                                 timeout=self.timeout)


def teacher_from_spec(spec: str, model: str | None = None, **options: Any) -> Teacher:
    """"http(s)://…/v1" → OpenAITeacher(spec, model, **options); "inproc:PATH_OR_PRESET" → InprocTeacher."""
    if spec.startswith(INPROC):
        from synth.teachers.inproc import InprocTeacher

        return InprocTeacher(spec[len(INPROC):], model=model, **options)
    if spec.startswith(("http://", "https://")):
        from synth.teachers.openai_http import OpenAITeacher

        return OpenAITeacher(spec, model, **options)
    raise ValueError(f"teacher {spec!r}: expected http(s)://HOST:PORT/v1 or inproc:PATH_OR_PRESET")


class TeacherStage:
    """Mixin for operators with a `teacher: TeacherConfig` in their config: the driver checks the teacher is
    reachable before the run starts (an unreachable server stops it, naming the URL)."""

    _teacher: Any = None

    def preflight(self) -> None:
        t = self.config.teacher  # type: ignore[attr-defined]
        if not t.endpoint.startswith("inproc:"):
            t.build().close()
