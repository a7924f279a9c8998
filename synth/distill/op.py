"""`distill`: a prompt → k teacher samples in one request (`n=k`), each parsed and checked
(synth/distill/checks.py); the prompt's pass@k and difficulty tier go on every sample; SFT `messages` are the
user turn (image + question) and the teacher's full response."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import Field

from pipelines import columns as C
from pipelines.formats import parse_answer
from pipelines.operator import Generator, OperatorConfig
from synth.distill.checks import TIERS, format_problem, is_verifiable, tier
from synth.distill.quality import mixed_language, repetition
from synth.teachers import TeacherConfig, TeacherError, TeacherStage

INSTRUCTION = ("{question}\n\nThink step by step inside <think></think>, then answer inside <answer></answer>; "
               "put the final answer inside <|begin_of_box|><|end_of_box|>.")


class DistillConfig(OperatorConfig):
    teacher: TeacherConfig = Field(description="The teacher (an OpenAI-compatible endpoint or inproc:PATH).")
    k: int = Field(4, ge=1, le=64, description="Samples per prompt (one request with n=k).")
    prompt: str = Field(INSTRUCTION, description="User text sent with the image; {question} is the prompt.")
    max_tokens: int = Field(2048, ge=1, description="Longest response (tokens); a cut one is dropped as truncated.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature of the k samples.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")
    seed: int = Field(0, description="Sampling seed sent with every request (reruns agree).")
    pass_score: float = Field(1.0, ge=0, le=1, description="A verifier score at least this is a right answer.")
    verifier_timeout_s: float = Field(5.0, gt=0, description="Hard timeout of one verification.")
    verifier_workers: int = Field(1, ge=1, description="Verifier processes per engine worker.")
    verifier_configs: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Options per domain.")
    max_think_words: int = Field(4000, ge=1, description="Longer thinking is dropped: overlong_think.")
    mixed_language_share: float = Field(0.05, ge=0, le=1, description="A second script above this share of the "
                                                                      "letters is mixed-language text.")
    repetition_ngram: int = Field(8, ge=1, description="Word n-gram size of the loop check.")
    repetition_max: int = Field(4, ge=1, description="An n-gram seen more often than this is a loop.")
    tiers: tuple[tuple[str, float], ...] = Field(TIERS, description="(tier, lowest pass@k), easiest first; "
                                                                    "pass@k 0 is `unsolved`.")
    too_easy: float = Field(1.0, ge=0, le=1, description="Prompts with pass@k at least this are reported too easy.")


def _image_format(data: bytes | None) -> str | None:
    if not data:
        return None
    return "png" if data.startswith(b"\x89PNG") else "jpeg"


class Distill(TeacherStage, Generator):
    name = "distill"
    Config = DistillConfig
    reads = ("text", "image", "answer", "domain")
    adds = (
        C.MESSAGES,
        pa.field("pass_at_k", pa.float32()),  # share of the prompt's k samples that were well formed and right
        pa.field("difficulty", pa.string()),  # very_easy … very_hard | unsolved | unverifiable
        pa.field("sample_index", pa.int32()),  # which of the k samples
        pa.field("teacher_model", pa.string()),
        pa.field("finish_reason", pa.string()),
        pa.field("verdict", pa.string()),  # the verifier's reason (match, mismatch, no_box, …)
        pa.field("think_words", pa.int32()),
        C.IMAGE_FORMAT,
    )


    def setup(self) -> None:
        self._teacher = self.config.teacher.build()
        self._cache: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_teacher", None)
        state.pop("_cache", None)
        state.pop("_rewards", None)
        return state

    def _ask(self, rows: list[dict[str, Any]]) -> None:
        """Teacher answers for the rows not answered yet (kept across the engine's retry of a failed batch, so
        a retry re-asks only the prompts that failed). Raises the first TeacherError after caching the rest."""
        c = self.config
        todo = [r for r in rows if r["key"] not in self._cache]
        first: TeacherError | None = None
        convs = [[{"role": "user", "content": ([{"type": "image", "image": r["image"]}] if r.get("image") else [])
                   + [{"type": "text", "text": c.prompt.replace("{question}", r["text"] or "")}]}] for r in todo]
        # One call for the batch: the teacher runs the requests concurrently (its concurrency limit); every
        # request carries the same seed, so a prompt's samples do not depend on which batch it landed in.
        results = self._teacher.chat(convs, n=c.k, max_tokens=c.max_tokens, temperature=c.temperature,
                                     top_p=c.top_p, seed=c.seed, return_exceptions=True) if todo else []
        for r, res in zip(todo, results, strict=True):
            if isinstance(res, TeacherError):
                first = first or res
            else:
                self._cache[r["key"]] = res
        if first is not None:
            raise first

    def generate_batch(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        if self._teacher is None:
            self.setup()
        c = self.config
        self._ask(rows)
        samples = [self._cache.pop(r["key"]) for r in rows]
        verifiable = [is_verifiable(r.get("domain"), r.get("answer")) for r in rows]
        # Format first; the well-formed samples of verifiable prompts are verified in one batch.
        problems = [[format_problem(s.text, v, s.finish_reason) for s in ss] for ss, v in zip(samples, verifiable, strict=True)]
        items, where = [], []
        for i, (ss, v) in enumerate(zip(samples, verifiable, strict=True)):
            for j, s in enumerate(ss):
                if v and problems[i][j] is None:
                    items.append((str(rows[i]["domain"]), s.text, str(rows[i]["answer"])))
                    where.append((i, j))
        verdicts = {pos: v for pos, v in zip(where, self._verify(items), strict=True)}
        out: list[list[dict[str, Any]]] = []
        for i, (row, ss) in enumerate(zip(rows, samples, strict=True)):
            right = [problems[i][j] is None and verdicts[(i, j)].score >= c.pass_score if verifiable[i] else None
                     for j in range(len(ss))]
            p = sum(bool(x) for x in right) / len(ss) if verifiable[i] and ss else None
            level = tier(p, c.tiers)
            children = []
            for j, s in enumerate(ss):
                verdict = verdicts.get((i, j))
                reason = problems[i][j]
                if reason is None and verifiable[i] and not right[j]:
                    reason = f"wrong_answer:{verdict.reason or 'mismatch'}"[:200]
                parsed = parse_answer(s.text)
                think_words = len((parsed.think or "").split())
                if reason is None:
                    reason = (mixed_language(s.text, c.mixed_language_share)
                              or (lambda r: f"repetition:{r}" if r else None)(
                                  repetition(s.text, c.repetition_ngram, c.repetition_max))
                              or (f"overlong_think:{think_words}" if think_words > c.max_think_words else None))
                child = {
                    "messages": C.qa(row["text"] or "", s.text, images=1 if row.get("image") else 0),
                    "pass_at_k": p, "difficulty": level, "sample_index": j,
                    "teacher_model": getattr(self._teacher, "model", None), "finish_reason": s.finish_reason,
                    "verdict": verdict.reason if verdict is not None else None, "think_words": think_words,
                    "image_format": _image_format(row.get("image")),
                }
                if reason is not None:
                    child.update(keep=False, reason=reason)
                children.append(child)
            out.append(children)
        return out

    def _verify(self, items: list[tuple[str, str, str]]) -> list[Any]:
        if not items:
            return []
        c = self.config
        try:
            if getattr(self, "_rewards", None) is None:
                # One warm pool per worker, reused by every batch (starting one per batch cost more than scoring).
                import atexit

                from train.rewards.pool import RewardPool

                self._rewards = RewardPool(workers=c.verifier_workers, timeout_s=c.verifier_timeout_s,
                                           configs=c.verifier_configs, context="forkserver")
                atexit.register(self._rewards.close)
            return list(self._rewards.score(items))
        except (AssertionError, OSError) as exc:  # no child processes allowed here (a daemonic worker)
            from train.rewards.base import get_verifier

            del exc
            return [get_verifier(d, c.verifier_configs.get(d)).score(a, t) for d, a, t in items]

