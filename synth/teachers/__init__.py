"""Teacher clients for generators: an OpenAI-compatible HTTP client (vLLM, SGLang, `vlmdata serve-model`) and the
project's model in process, chosen by config (TeacherConfig / teacher_from_spec)."""

from synth.teachers.base import (
           Completion,
           Messages,
           Teacher,
           TeacherError,
           TeacherTimeout,
           Usage,
           attach_images,
)
from synth.teachers.config import TeacherConfig, TeacherStage, teacher_from_spec

__all__ = ["Completion", "Messages", "Teacher", "TeacherConfig", "TeacherStage", "TeacherError", "TeacherTimeout", "Usage",
           "attach_images", "teacher_from_spec"]
