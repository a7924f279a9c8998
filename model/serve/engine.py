"""Batched generation shared by the server and in-process teachers: one `model.generate` per batch of prompts,
with per-row sampling (temperature, top_p, seed), per-row token limits and stop strings, and streamed deltas."""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from model import tokens
from model.serve.loading import LoadedModel

# Keys of the processor's output that run along the token axis (left-padded when batching); the image keys
# (pixel_values, image_grid_thw) are concatenated along their first axis in prompt order.
_IMAGE_KEYS = ("pixel_values", "image_grid_thw")

# Steps a batch runs before it may pause to let waiting requests join (each pause re-reads the resumed rows).
MIN_STEPS_BEFORE_YIELD = 4

# on_event(choice_index, text_delta, finish_reason | None), called from the generating thread.
EventSink = Callable[[int, str, str | None], None]


@dataclass(frozen=True)
class SamplingParams:
    """What one request asks for; `temperature == 0` is greedy decoding."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None


class PromptError(ValueError):
    """A conversation the model's processor cannot take (an image it refuses, e.g. an aspect ratio past 200): the
    request's fault, answered as a 400 by the server."""


@dataclass
class Prompt:
    """One tokenized prompt: the processor's tensors for a single sequence (batch axis 1)."""

    inputs: dict[str, torch.Tensor]

    @property
    def num_tokens(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


@dataclass
class Choice:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (EOS or a stop string) | "length"


@dataclass
class Result:
    choices: list[Choice]
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return sum(len(c.token_ids) for c in self.choices)


@dataclass
class Job:
    """A prompt with its sampling parameters; `n` rows in the batch. `on_event` receives text as it is decoded."""

    prompt: Prompt
    params: SamplingParams
    on_event: EventSink | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)


class Row:
    """Decoding state of one sequence: tokens so far, text (incremental detokenization), stop/limit checks."""

    def __init__(self, job: Job, index: int, engine: Engine):
        self.job, self.index, self.engine = job, index, engine
        self.generator: torch.Generator | None = None  # set when the row samples (temperature > 0)
        self.tokens: list[int] = []
        self.text = ""  # decoded text so far (only kept when streaming or matching stop strings)
        self.emitted = 0  # characters already sent to on_event
        self.prefix_offset = self.read_offset = 0
        self.finish: str | None = None
        self.stops = job.params.stop
        self.needs_text = bool(self.stops) or job.on_event is not None
        # Characters held back while streaming, so a stop string split across tokens is never sent.
        self.holdback = max((len(s) for s in self.stops), default=1) - 1

    def step(self, token: int) -> bool:
        """Take one generated token; True once the row is finished."""
        if self.finish is not None:
            return True
        if self.job.cancelled.is_set():
            self.finish = "cancelled"
            return True
        if token in self.engine.stop_token_ids:
            self.finish = "stop"
        else:
            self.tokens.append(token)
            if self.needs_text:
                self._detokenize()
                if self.stops and self._cut_at_stop():
                    self.finish = "stop"
            if self.finish is None and len(self.tokens) >= self.job.params.max_tokens:
                self.finish = "length"
        if self.finish is not None:
            self._emit_final()
        elif self.job.on_event is not None:
            safe = len(self.text) - self.holdback
            if safe > self.emitted:
                self.job.on_event(self.index, self.text[self.emitted:safe], None)
                self.emitted = safe
        return self.finish is not None

    def _detokenize(self) -> None:
        # Decode a short window so each step costs O(1) tokens; text ending in U+FFFD is an unfinished
        # multi-byte character and waits for the next token (as vLLM's and transformers' streamers do).
        decode = self.engine.decode
        prefix = decode(self.tokens[self.prefix_offset:self.read_offset])
        new = decode(self.tokens[self.prefix_offset:])
        if len(new) > len(prefix) and not new.endswith("\ufffd"):
            self.text += new[len(prefix):]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.tokens)

    def _cut_at_stop(self) -> bool:
        # Only the tail can hold a new match: the previous text was already checked.
        start = max(0, len(self.text) - self.holdback - 64)
        hits = [i for s in self.stops if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            return True
        return False

    def final_text(self) -> str:
        if self.stops and self.finish == "stop" and self.needs_text:
            return self.text
        return self.engine.decode(self.tokens)

    def _emit_final(self) -> None:
        if self.job.on_event is not None and self.finish != "cancelled":
            rest = self.final_text()[self.emitted:]
            self.emitted += len(rest)
            self.job.on_event(self.index, rest, self.finish)


class _RowStops(StoppingCriteria):
    """Per-row end of generation: EOS, stop strings, the row's own max_tokens, a cancelled request; and a pause
    of the whole batch when the scheduler wants to let waiting requests in."""

    def __init__(self, rows: Sequence[Row], should_yield: Callable[[int], bool] | None = None):
        self.rows, self.should_yield, self.steps = rows, should_yield, 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        last = input_ids[:, -1].tolist()
        done = [row.step(tok) for row, tok in zip(self.rows, last, strict=True)]
        self.steps += 1
        if self.should_yield is not None and self.steps >= MIN_STEPS_BEFORE_YIELD and not all(done) \
                and self.should_yield(done.count(False)):
            done = [True] * len(done)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _RowSampler(LogitsProcessor):
    """Sampling for the rows that ask for it, each with its own temperature, top_p and random generator; the
    chosen token is left as the only finite logit, so generate's greedy pick takes it. Greedy rows are untouched."""

    def __init__(self, rows: list[tuple[int, float, float, torch.Generator]]):
        self.rows = rows

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for i, temperature, top_p, gen in self.rows:
            probs = torch.softmax(scores[i].float() / temperature, dim=-1)
            if top_p < 1.0:
                sorted_p, order = probs.sort(descending=True)
                # keep the smallest prefix whose mass reaches top_p (the first token always stays)
                sorted_p[(sorted_p.cumsum(0) - sorted_p) >= top_p] = 0.0
                pick = order[torch.multinomial(sorted_p, 1, generator=gen)]
            else:
                pick = torch.multinomial(probs, 1, generator=gen)
            scores[i] = float("-inf")
            scores[i, pick] = 0.0
        return scores


class Engine:
    """Turns chat messages into prompts and runs batches of jobs through one `generate` call each.

    Not thread-safe: one thread calls `run` at a time (the server's batch worker, or an in-process teacher)."""

    def __init__(self, loaded: LoadedModel, max_model_len: int | None = None):
        self.model, self.processor, self.name = loaded.model, loaded.processor, loaded.name
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        # Decoding runs on the generation thread while another thread may be encoding the next prompts; a Rust
        # tokenizer must not be used by two threads at once, so decoding has its own copy.
        self._decoder = copy.deepcopy(self.tokenizer)
        self.device = next(self.model.parameters()).device
        text_cfg = self.model.config.get_text_config()
        self.max_model_len = max_model_len or int(text_cfg.max_position_embeddings)
        self.pad_token_id = self.tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = self.tokenizer.eos_token_id
        # EOS, plus the chat turn tokens GLM-4.1V ends an answer with (its generation_config lists them too).
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        vocab = self.tokenizer.get_vocab()
        ids |= {vocab[t] for t in (tokens.EOS, tokens.USER, tokens.OBSERVATION) if t in vocab}
        self.stop_token_ids = frozenset(ids)
        self._rng = random.Random()

    # -- prompts ---------------------------------------------------------------------------------------------
    def prompt_text(self, messages: list[dict]) -> str:
        """HF multimodal chat messages (content parts {"type": "image"} / {"type": "text"}) → the model's prompt."""
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def prepare(self, messages: list[dict], images: Sequence[Image.Image] = ()) -> Prompt:
        """Tokenize one conversation; `images` fill its {"type": "image"} parts in order."""
        n_parts = sum(1 for m in messages if isinstance(m.get("content"), list)
                      for p in m["content"] if p.get("type") == "image")
        if n_parts != len(images):
            raise ValueError(f"{n_parts} image parts in the messages but {len(images)} images")
        text = self.prompt_text(messages)
        try:
            inputs = self.processor(text=[text], images=list(images) or None, return_tensors="pt")
        except ValueError as exc:  # the image processor's own checks (aspect ratio, size)
            raise PromptError(f"the model's processor refused the input: {exc}") from None
        return Prompt(inputs={k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)})

    def decode(self, ids: Sequence[int]) -> str:
        return self._decoder.decode(ids, skip_special_tokens=False)

    # -- batches ---------------------------------------------------------------------------------------------
    def new_rows(self, job: Job) -> list[Row]:
        """The job's n sequences, each with its own random generator when it samples."""
        rows = [Row(job, i, self) for i in range(job.params.n)]
        if job.params.temperature > 0:
            for row in rows:
                row.generator = torch.Generator(device=self.device)
                seed = job.params.seed
                row.generator.manual_seed(
                    hash((seed, row.index)) & 0x7FFF_FFFF_FFFF_FFFF if seed is not None else self._rng.getrandbits(63))
        return rows

    def _collate(self, rows: Sequence[Row]) -> dict[str, torch.Tensor]:
        """Each row's prompt plus the tokens it already generated (a row resumed in a new batch), left-padded."""
        seqs = []
        for row in rows:
            inputs = dict(row.job.prompt.inputs)
            if row.tokens:  # resumed: its text so far becomes part of the prompt (no image tokens in it)
                extra = len(row.tokens)
                for key, t in inputs.items():
                    if key == "input_ids":
                        inputs[key] = torch.cat([t, torch.tensor([row.tokens], dtype=t.dtype)], dim=1)
                    elif key not in _IMAGE_KEYS:
                        inputs[key] = torch.cat([t, torch.full((1, extra), int(key == "attention_mask"), dtype=t.dtype)], dim=1)
            seqs.append(inputs)
        width = max(int(x["input_ids"].shape[1]) for x in seqs)
        batch: dict[str, list[torch.Tensor]] = {}
        for inputs in seqs:
            pad = width - int(inputs["input_ids"].shape[1])
            for key, t in inputs.items():
                if key not in _IMAGE_KEYS and pad:
                    fill = self.pad_token_id if key == "input_ids" else 0
                    t = torch.cat([torch.full((1, pad), fill, dtype=t.dtype), t], dim=1)
                batch.setdefault(key, []).append(t)
        out = {k: torch.cat(v, dim=0).to(self.device) for k, v in batch.items()}
        if "pixel_values" in out:
            out["pixel_values"] = out["pixel_values"].to(self.model.dtype)
        return out

    @torch.inference_mode()
    def step(self, rows: Sequence[Row], should_yield: Callable[[int], bool] | None = None) -> None:
        """One `generate` over unfinished rows. Each row ends finished (EOS, stop string, its max_tokens) unless
        `should_yield(unfinished_rows)` turns true: then generation pauses and the unfinished rows keep their
        state, to be resumed in a later batch (with newly arrived requests)."""
        samplers = [(r, row.job.params.temperature, row.job.params.top_p, row.generator)
                    for r, row in enumerate(rows) if row.generator is not None]
        max_new = max(row.job.params.max_tokens - len(row.tokens) for row in rows)
        config = GenerationConfig(
            max_new_tokens=max_new, min_new_tokens=0, do_sample=False, num_beams=1, repetition_penalty=1.0,
            no_repeat_ngram_size=0, eos_token_id=sorted(self.stop_token_ids), pad_token_id=self.pad_token_id,
        )
        self.model.generate(
            **self._collate(rows), generation_config=config,
            logits_processor=LogitsProcessorList([_RowSampler(samplers)] if samplers else []),
            stopping_criteria=StoppingCriteriaList([_RowStops(rows, should_yield)]),
        )

    @staticmethod
    def result(job: Job, rows: Sequence[Row]) -> Result:
        return Result([Choice(r.index, r.final_text(), r.tokens, r.finish or "length") for r in rows],
                      job.prompt.num_tokens)

    def run(self, jobs: Sequence[Job]) -> list[Result]:
        """Generate for all jobs in one batch; rows finish independently (EOS, stop string, their max_tokens)."""
        per_job = [self.new_rows(job) for job in jobs]
        self.step([row for rows in per_job for row in rows])
        return [self.result(job, rows) for job, rows in zip(jobs, per_job, strict=True)]
