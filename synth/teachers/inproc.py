"""A teacher that runs the project's own model (a saved folder or a preset) in this process, through the same
batched generation engine as `vlmdata serve-model`, so both give the same greedy text for a prompt."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from model.serve.engine import Engine, Job, SamplingParams
from model.serve.loading import load_model
from pipelines.imaging import DecodeError, decode_rgb, to_rgb
from synth.teachers.base import Completion, Messages, Teacher, TeacherError, Usage, image_parts, settle


def _pil(image: bytes | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return to_rgb(image)
    try:
        return decode_rgb(image)
    except DecodeError as exc:  # the curate decode stage's reasons: the same for the same bytes on every run
        raise TeacherError(f"not a readable image ({exc.reason})") from None


def _model_messages(messages: Messages) -> Messages:
    return [{"role": m["role"], "content": [
        {"type": "image"} if p.get("type") == "image" else {"type": "text", "text": p.get("text", "")}
        for p in m["content"]] if isinstance(m.get("content"), list) else (m.get("content") or "")}
        for m in messages]


class InprocTeacher(Teacher):
    def __init__(self, path_or_preset: str, model: str | None = None, device: str = "auto", dtype: str = "auto",
                 max_batch_rows: int = 32):
        self.engine = Engine(load_model(path_or_preset, device=device, dtype=dtype, name=model))
        self.model = self.engine.name
        self.max_batch_rows = max_batch_rows

    def chat(self, conversations: Sequence[Messages], *, n: int = 1, max_tokens: int = 256, temperature: float = 0.0,
             top_p: float = 1.0, stop: Sequence[str] = (), seed: int | None = None,
             return_exceptions: bool = False) -> list[list[Completion] | TeacherError]:
        results: list[list[Completion] | TeacherError] = []
        jobs: list[tuple[int, Job]] = []
        for i, messages in enumerate(conversations):
            results.append(TeacherError("not run"))
            try:
                prompt = self.engine.prepare(_model_messages(messages), [_pil(im) for im in image_parts(messages)])
            except (TeacherError, ValueError) as exc:
                results[i] = exc if isinstance(exc, TeacherError) else TeacherError(str(exc))
                continue
            room = self.engine.max_model_len - prompt.num_tokens
            if max_tokens > room:
                results[i] = TeacherError(f"{prompt.num_tokens} prompt tokens + max_tokens {max_tokens} exceed "
                                          f"the model's context of {self.engine.max_model_len} tokens")
                continue
            params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, n=n,
                                    stop=tuple(s for s in stop if s), seed=seed)
            jobs.append((i, Job(prompt, params)))
        per_batch = max(1, self.max_batch_rows // n)
        for start in range(0, len(jobs), per_batch):
            chunk = jobs[start:start + per_batch]
            for (i, _), res in zip(chunk, self.engine.run([job for _, job in chunk]), strict=True):
                usage = Usage(res.prompt_tokens, res.completion_tokens)
                results[i] = [Completion(c.text, c.finish_reason, usage) for c in res.choices]
        return settle(results, return_exceptions)

    def close(self) -> None:
        self.engine = None  # type: ignore[assignment]
