"""`recaption`: the teacher rewrites each caption from the image and the original; the rewrite is checked
(synth/recaption/checks.py, PP-OCR and CLIP when configured) and falls back to the original with the reason.
Both captions stay in the sample's `.json`; a seeded per-key draw at `ratio` decides which one becomes `text`."""

from __future__ import annotations

import io
import random
from typing import Any

import pyarrow as pa
from pydantic import Field

from pipelines.operator import Operator, OperatorConfig, with_verdicts
from synth.recaption.checks import RecaptionChecks, candidate_text, check_recaption, clip_margin_ok
from synth.teachers import TeacherConfig, TeacherError, TeacherStage

PROMPT = ("Here is an image and its original caption:\n{caption}\n\nRewrite the caption so that it describes the "
          "image accurately and in detail. Keep every name, number and quoted text of the original that the image "
          "shows; do not invent anything. Write in the language of the original. Answer with the caption only.")


class ClipMargin(OperatorConfig):
    """The CLIP check of a recaption: its score may fall below the original's by at most `margin`."""

    model: str = Field("ViT-B-32", description="open_clip model name (as clip_score).")
    pretrained: str | None = Field(None, description="Pretrained tag or local checkpoint; None: random init (tests).")
    model_config_path: str | None = Field(None, alias="model_config", description="Custom open_clip model config json.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N.")
    margin: float = Field(0.02, ge=0, description="Allowed drop of cosine(image, recaption) below cosine(image, "
                                                  "original).")
    batch_size: int = Field(32, ge=1, description="Images per forward pass.")

    model_config = {**OperatorConfig.model_config, "populate_by_name": True, "protected_namespaces": ()}


class RecaptionConfig(OperatorConfig):
    teacher: TeacherConfig = Field(description="The teacher (an OpenAI-compatible endpoint or inproc:PATH).")
    prompt: str = Field(PROMPT, description="User text sent with the image; {caption} is the original caption.")
    max_tokens: int = Field(256, ge=1, description="Longest recaption the teacher may write (tokens).")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature (0: greedy).")
    seed: int = Field(0, description="Sampling seed sent to the teacher, and the seed of the ratio draw.")
    ratio: float = Field(0.5, ge=0, le=1, description="Share of rows with an accepted recaption whose `text` becomes "
                                                      "the recaption (the rest keep the original), drawn per key.")
    checks: RecaptionChecks = Field(default_factory=RecaptionChecks, description="Length, language, loop and "
                                                                                   "fact checks.")
    ocr: bool = Field(False, description="Read each image with PP-OCR (rapidocr): a number or quoted text of the "
                                         "original that OCR reads otherwise need not survive.")
    ocr_min_score: float = Field(0.5, ge=0, le=1, description="PP-OCR lines below this score are ignored.")
    clip: ClipMargin | None = Field(None, description="CLIP score check; None: off.")


class Recaption(TeacherStage, Operator):
    name = "recaption"
    Config = RecaptionConfig
    reads = ("image", "text")
    adds = (
        pa.field("caption_original", pa.string()),  # the caption as it came in
        pa.field("recaption", pa.string()),  # what the teacher wrote (also when it failed a check)
        pa.field("recaption_ok", pa.bool_()),  # it passed every check
        pa.field("recaption_reason", pa.string()),  # why it fell back to the original (null: accepted)
        pa.field("caption_source", pa.string()),  # "recaption" | "original": which one is `text`
        pa.field("clip_score_original", pa.float32()),
        pa.field("clip_score_recaption", pa.float32()),
    )

    _ocr: Any = None
    _clip: Any = None

    def setup(self) -> None:
        self._teacher = self.config.teacher.build()
        if self.config.ocr:
            from synth.ocr.verify import OcrEngine

            self._ocr = OcrEngine(threads=1, min_score=self.config.ocr_min_score)
        if self.config.clip is not None:
            from filters.clip_score import ClipScore

            c = self.config.clip
            self._clip = ClipScore({"model": c.model, "pretrained": c.pretrained, "model_config": c.model_config_path,
                                    "device": c.device, "batch_size": c.batch_size, "keep_embeddings": False,
                                    "threshold": 0.0})
            self._clip.setup()

    def __getstate__(self) -> dict[str, Any]:
        # Engines pickle operators to ship them: clients and models are rebuilt by setup() in the worker.
        state = dict(self.__dict__)
        for name in ("_teacher", "_ocr", "_clip"):
            state.pop(name, None)
        return state

    def _ocr_text(self, image: bytes) -> str | None:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(image)) as im:
                return "\n".join(d.text for d in self._ocr.read(im.convert("RGB")))
        except Exception:  # noqa: BLE001 - an image OCR cannot read excuses nothing
            return None

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if self._teacher is None:
            self.setup()
        c = self.config
        rows = batch.select(["key", "image", "text"]).to_pylist()
        reasons: list[str | None] = [None] * len(rows)
        candidates: list[str | None] = [None] * len(rows)
        ask: list[int] = []
        for i, r in enumerate(rows):
            if not r["image"]:
                reasons[i] = "no_image"
            elif not (r["text"] or "").strip():
                reasons[i] = "no_caption"
            else:
                ask.append(i)
        conversations = [[{"role": "user", "content": [
            {"type": "image", "image": rows[i]["image"]},
            {"type": "text", "text": c.prompt.replace("{caption}", rows[i]["text"])}]}] for i in ask]
        answers = self._teacher.chat(conversations, n=1, max_tokens=c.max_tokens, temperature=c.temperature,
                                     seed=c.seed, return_exceptions=True) if ask else []
        for i, answer in zip(ask, answers, strict=True):
            if isinstance(answer, TeacherError):
                reasons[i] = f"teacher_error:{str(answer)[:200]}"
                continue
            if answer[0].finish_reason == "length":
                candidates[i] = candidate_text(answer[0].text)
                reasons[i] = "truncated"
                continue
            candidates[i] = candidate_text(answer[0].text)
            ocr_text = self._ocr_text(rows[i]["image"]) if self._ocr is not None else None
            reasons[i] = check_recaption(rows[i]["text"], candidates[i], c.checks, ocr_text)
        clip_orig: list[float | None] = [None] * len(rows)
        clip_new: list[float | None] = [None] * len(rows)
        passed = [i for i in ask if reasons[i] is None]
        if self._clip is not None and passed:
            images = [rows[i]["image"] for i in passed]
            scores = self._clip_scores(images + images, [rows[i]["text"] for i in passed] + [candidates[i] for i in passed])
            for j, i in enumerate(passed):
                clip_orig[i], clip_new[i] = scores[j], scores[len(passed) + j]
                if clip_orig[i] is None or clip_new[i] is None:
                    reasons[i] = "clip_unscored"
                elif not clip_margin_ok(clip_orig[i], clip_new[i], self.config.clip.margin):
                    reasons[i] = f"clip_below_original:{clip_new[i]:.3f}<{clip_orig[i]:.3f}"
        texts, sources = [], []
        for i, r in enumerate(rows):
            use = reasons[i] is None and random.Random(f"{c.seed}:{r['key']}").random() < c.ratio
            texts.append(candidates[i] if use else r["text"])
            sources.append("recaption" if use else "original")
        columns = {
            "text": pa.array(texts, pa.string()),
            "caption_original": pa.array([r["text"] for r in rows], pa.string()),
            "recaption": pa.array(candidates, pa.string()),
            "recaption_ok": pa.array([reasons[i] is None for i in range(len(rows))], pa.bool_()),
            "recaption_reason": pa.array(reasons, pa.string()),
            "caption_source": pa.array(sources, pa.string()),
            "clip_score_original": pa.array(clip_orig, pa.float32()),
            "clip_score_recaption": pa.array(clip_new, pa.float32()),
        }
        n = batch.num_rows
        return with_verdicts(batch, [True] * n, [None] * n, columns=columns)

    def _clip_scores(self, images: list[bytes], texts: list[str]) -> list[float | None]:
        out: list[float | None] = []
        for ok, scores, _, _ in self._clip.encode_batches(images, texts):
            it = iter(scores if scores is not None else [])
            out.extend(float(next(it)) if o else None for o in ok)
        return out
