"""Rollouts behind one interface: `HFRollout` (transformers `generate`, CPU or GPU) and `VLLMRollout` (vLLM,
GPU, when installed), each returning G completions per prompt with forced answering at the thinking budget."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from pydantic import BaseModel, Field

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


class HFRollout:
    """Rollouts with the policy's own `generate` (the policy is the rollout model, so syncing is a no-op)."""

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

    @torch.no_grad()
    def _generate(self, inputs: dict[str, torch.Tensor], max_new: int) -> torch.Tensor:
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        t0 = time.perf_counter()
        out = self.model.generate(**inputs, max_new_tokens=max_new, do_sample=True, temperature=self.cfg.temperature,
                                  top_p=self.cfg.top_p, top_k=0, suppress_tokens=self.suppress or None,
                                  eos_token_id=self.stop_ids, pad_token_id=self.pad_id)
        self.generate_seconds += time.perf_counter() - t0
        return out[:, inputs["input_ids"].shape[1]:].cpu()

    def _cut(self, row: list[int]) -> tuple[list[int], bool]:
        """Tokens up to and including the first stop token; whether there was one."""
        for j, t in enumerate(row):
            if t in self.stop_ids:
                return row[: j + 1], True
        return row, False

    def generate(self, prompts: list[Prompt], n: int, seed: int) -> list[list[Rollout]]:
        """n rollouts per prompt; a rollout that reaches `think_budget` without `</think>` gets `</think><answer>`
        inserted and is continued for `answer_budget` tokens (one still in its answer just continues)."""
        was_training = self.model.training
        self.model.eval()
        use_default_attention(self.model)
        torch.manual_seed(seed)
        rows = [p for p in prompts for _ in range(n)]
        results: list[Rollout] = []
        for start in range(0, len(rows), self.cfg.batch_size):
            chunk = rows[start:start + self.cfg.batch_size]
            inputs = self._inputs(chunk)
            gen = self._generate(inputs, self.cfg.think_budget)
            mask = inputs["attention_mask"].bool()
            part = []
            for b in range(len(chunk)):
                ids, done = self._cut(gen[b].tolist())
                part.append(Rollout(inputs["input_ids"][b][mask[b]], ids, None, 0, done, ""))
            self._force(chunk, part)
            results += part
        for r in results:
            self.generated_tokens += len(r.completion_ids) - r.forced_len
            body = r.completion_ids[:-1] if r.finished else r.completion_ids
            r.text = self.tok.decode(body, skip_special_tokens=False)
        if was_training:
            self.model.train()
        return [results[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _force(self, prompts: list[Prompt], rollouts: list[Rollout]) -> None:
        todo = [i for i, r in enumerate(rollouts) if not r.finished]
        if not todo:
            return
        for i in todo:
            r = rollouts[i]
            if not _contains(r.completion_ids, self.think_end):
                r.forced_at, r.forced_len = len(r.completion_ids), len(self.forced)
                r.completion_ids = r.completion_ids + self.forced
        inputs = self._inputs([prompts[i] for i in todo])
        seqs = [torch.cat([rollouts[i].prompt_ids, torch.tensor(rollouts[i].completion_ids, dtype=torch.long)])
                for i in todo]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(seqs), width), dtype=torch.long)
        for b, s in enumerate(seqs):
            ids[b, width - len(s):] = s
            att[b, width - len(s):] = 1
        inputs["input_ids"], inputs["attention_mask"] = ids, att
        if "mm_token_type_ids" in inputs:
            image_id = self.model.config.image_token_id
            inputs["mm_token_type_ids"] = (ids == image_id).long() * att
        cont = self._generate(inputs, self.cfg.answer_budget)
        for b, i in enumerate(todo):
            more, done = self._cut(cont[b].tolist())
            rollouts[i].completion_ids += more
            rollouts[i].finished = done


def _contains(seq: list[int], sub: list[int]) -> bool:
    n = len(sub)
    return any(seq[j:j + n] == sub for j in range(len(seq) - n + 1))


def make_rollout(cfg: RolloutConfig, model, processor) -> RolloutEngine:
    if cfg.backend == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise SystemExit("rollout.backend: vllm needs `pip install vllm` on a GPU host; use backend: hf here") from None
        raise SystemExit("rollout.backend: vllm is not wired yet in this build (weight sync to a vLLM engine is "
                         "untested without a GPU); use backend: hf")
    return HFRollout(model, processor, cfg)
