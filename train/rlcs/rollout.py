"""Rollouts behind one interface: `HFRollout` (transformers `generate`, CPU or GPU) and `VLLMRollout` (vLLM,
GPU, when installed), each returning G completions per prompt with forced answering at the thinking budget."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from pydantic import BaseModel, Field
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from model import tokens
from model.attention import use_default_attention
from train.rlcs.prompts import Prompt


class RolloutConfig(BaseModel):
    backend: Literal["hf", "vllm"] = Field("hf", description="transformers generate (CPU/GPU) or vLLM (GPU).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of rollouts.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (the report samples at top-p 1.0).")
    think_budget: int = Field(64, ge=1, description="New tokens before a rollout still thinking is forced to answer.")
    answer_budget: int = Field(24, ge=1, description="New tokens after `</think><answer>` is inserted.")
    batch_size: int = Field(64, ge=1, description="Rows per generate call.")


@dataclass
class Rollout:
    prompt_ids: torch.Tensor  # [n] the prompt as the model saw it (image tokens expanded)
    completion_ids: list[int]  # generated tokens, the forced ones included, the final stop token included
    forced_at: int | None  # index in completion_ids where `</think><answer>` was inserted (None: not forced)
    forced_len: int
    finished: bool  # ended with a stop token (not cut by the budget)
    text: str  # the completion decoded (without the stop token)

    @property
    def sampled_mask(self) -> list[bool]:
        """Which completion tokens the policy sampled (the inserted ones were not)."""
        m = [True] * len(self.completion_ids)
        if self.forced_at is not None:
            for j in range(self.forced_at, self.forced_at + self.forced_len):
                m[j] = False
        return m


class RolloutEngine(Protocol):
    def sync(self, model: torch.nn.Module) -> None: ...
    def generate(self, prompts: list[Prompt], n: int, seed: int) -> list[list[Rollout]]: ...


class _ForceAnswer(LogitsProcessor):
    """Forced answering inside the one `generate` call: at `budget` new tokens, every row that has not written
    `</think>` gets the `forced` tokens (all other logits -inf, so sampling picks them with probability 1); the
    row then continues from its KV cache, with no second prefill."""

    def __init__(self, width: int, budget: int, think_end: list[int], forced: list[int]) -> None:
        self.width, self.budget, self.think_end = width, budget, torch.tensor(think_end)
        self.forced = forced
        self.rows: torch.Tensor | None = None  # [B] bool: rows being forced (set at the budget)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        k = input_ids.shape[1] - self.width - self.budget
        if k < 0 or k >= len(self.forced):
            return scores
        if k == 0:
            self.rows = ~_has(input_ids[:, self.width:], self.think_end.to(input_ids.device))
        if not bool(self.rows.any()):
            return scores
        forced = torch.full_like(scores[0], float("-inf"))
        forced[self.forced[k]] = 0.0
        return torch.where(self.rows[:, None], forced, scores)


class _RowBudget(StoppingCriteria):
    """Stops each row at its own length: think budget + answer budget, plus the inserted tokens if forced."""

    def __init__(self, width: int, force: _ForceAnswer, answer_budget: int) -> None:
        self.width, self.force, self.answer_budget = width, force, answer_budget

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        n = input_ids.shape[1] - self.width
        limit = self.force.budget + self.answer_budget
        if self.force.rows is None:
            return torch.full((input_ids.shape[0],), n >= limit, dtype=torch.bool, device=input_ids.device)
        return n >= limit + self.force.rows.long() * len(self.force.forced)


def _has(seqs: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
    """[B] whether each row of [B, L] contains the token sequence `sub`."""
    n = len(sub)
    if seqs.shape[1] < n:
        return torch.zeros(seqs.shape[0], dtype=torch.bool, device=seqs.device)
    return (seqs.unfold(1, n, 1) == sub).all(-1).any(-1)


class HFRollout:
    """Rollouts with the policy's own `generate` (the policy is the rollout model, so syncing is a no-op).

    One `generate` call per batch does thinking, forced answering and the answer: the forcing is a logits
    processor and each row's budget a stopping criterion, so a forced row continues from its KV cache (no second
    prefill, no second pass of the vision encoder) and sampling is exactly plain `generate`'s. Each prompt's
    text and images go through the processor and the vision encoder once per call, however many rollouts it has
    (`num_return_sequences`)."""

    def __init__(self, model, processor, cfg: RolloutConfig) -> None:
        self.model, self.processor, self.cfg = model, processor, cfg
        self.tok = processor.tokenizer
        vocab = self.tok.get_vocab()
        eos = self.tok.eos_token_id
        self.stop_ids = sorted({eos} | {vocab[t] for t in (tokens.EOS, tokens.USER, tokens.OBSERVATION) if t in vocab})
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else eos
        # a sampled image/video placeholder would claim pixels the prompt does not have: never generate them
        self.suppress = sorted({vocab[t] for t in (tokens.IMAGE, tokens.VIDEO, tokens.IMAGE_BEGIN, tokens.IMAGE_END,
                                                   tokens.VIDEO_BEGIN, tokens.VIDEO_END, tokens.GMASK, tokens.SOP)
                                if t in vocab})
        self.think_end = self.tok.encode(tokens.THINK_END, add_special_tokens=False)
        self.forced = self.tok.encode(tokens.THINK_END + tokens.ANSWER_BEGIN, add_special_tokens=False)
        self.generated_tokens = 0
        self.generate_seconds = 0.0

    def sync(self, model: torch.nn.Module) -> None:
        self.model = model

    def _inputs(self, prompts: list[Prompt]) -> dict[str, torch.Tensor]:
        self.tok.padding_side = "left"
        texts = [self.processor.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=False)
                 for p in prompts]
        images = [im for p in prompts for im in p.images]
        inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        inputs.pop("token_type_ids", None)
        return {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}

    def _cut(self, row: list[int]) -> tuple[list[int], bool]:
        """Tokens up to and including the first stop token; whether there was one."""
        for j, t in enumerate(row):
            if t in self.stop_ids:
                return row[: j + 1], True
        return row, False

    @torch.no_grad()
    def _batch(self, prompts: list[Prompt], r: int) -> list[Rollout]:
        """r rollouts of each prompt, prompt-major: `generate` runs the processor and the vision encoder once per
        prompt and expands the batch r times (num_return_sequences)."""
        inputs = self._inputs(prompts)
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        width, budget, answer = inputs["input_ids"].shape[1], self.cfg.think_budget, self.cfg.answer_budget
        force = _ForceAnswer(width, budget, self.think_end, self.forced)
        t0 = time.perf_counter()
        out = self.model.generate(
            **inputs, max_new_tokens=budget + len(self.forced) + answer, do_sample=True, num_return_sequences=r,
            temperature=self.cfg.temperature, top_p=self.cfg.top_p, top_k=0, suppress_tokens=self.suppress or None,
            eos_token_id=self.stop_ids, pad_token_id=self.pad_id, logits_processor=LogitsProcessorList([force]),
            stopping_criteria=StoppingCriteriaList([_RowBudget(width, force, answer)]))
        self.generate_seconds += time.perf_counter() - t0
        gen = out[:, width:].tolist()
        forced_rows = force.rows.tolist() if force.rows is not None else [False] * len(gen)
        mask = inputs["attention_mask"].bool().cpu()
        ids = inputs["input_ids"].cpu()
        part = []
        for b, row in enumerate(gen):
            head, done = self._cut(row[:budget])
            forced_at = None
            if not done:  # reached the thinking budget: the rest of the row is its answer phase
                forced_at = budget if forced_rows[b] else None
                head, done = self._cut(row[:budget + (len(self.forced) if forced_rows[b] else 0) + answer])
            part.append(Rollout(ids[b // r][mask[b // r]], head, forced_at,
                                len(self.forced) if forced_at is not None else 0, done, ""))
        return part

    def generate(self, prompts: list[Prompt], n: int, seed: int) -> list[list[Rollout]]:
        """n rollouts per prompt; a rollout that reaches `think_budget` without `</think>` gets `</think><answer>`
        inserted and is continued for `answer_budget` tokens (one still in its answer just continues)."""
        was_training = self.model.training
        self.model.eval()
        use_default_attention(self.model)
        torch.manual_seed(seed)
        size = self.cfg.batch_size
        results: list[Rollout] = []
        if n <= size:  # whole groups per call
            per = size // n
            for start in range(0, len(prompts), per):
                results += self._batch(prompts[start:start + per], n)
        else:  # a group larger than a batch: split it
            for p in prompts:
                for start in range(0, n, size):
                    results += self._batch([p], min(size, n - start))
        for r in results:
            self.generated_tokens += len(r.completion_ids) - r.forced_len
            body = r.completion_ids[:-1] if r.finished else r.completion_ids
            r.text = self.tok.decode(body, skip_special_tokens=False)
        if was_training:
            self.model.train()
        return [results[i * n:(i + 1) * n] for i in range(len(prompts))]


def make_rollout(cfg: RolloutConfig, model, processor) -> RolloutEngine:
    if cfg.backend == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise SystemExit("rollout.backend: vllm needs `pip install vllm` on a GPU host; use backend: hf here") from None
        raise SystemExit("rollout.backend: vllm is not wired yet in this build (weight sync to a vLLM engine is "
                         "untested without a GPU); use backend: hf")
    return HFRollout(model, processor, cfg)
