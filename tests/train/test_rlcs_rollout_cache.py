"""Forced answering continues from the KV cache inside one `generate` call. Checked two ways:

- a GLM-4.1V whose weights are set by hand to a branching token program, so that one batch (two prompts of
  different lengths, left padded) holds the three fates of a rollout with a fixed seed: it stops while thinking,
  it thinks through the budget and is forced (then answers `7`, which parses and scores), or it closes its
  thinking itself and is still answering at the budget (not forced, cut after the answer budget);
- a random tiny GLM-4.1V sampled at a near-zero temperature: every token sampled after the inserted
  `</think><answer>` is the argmax of a fresh full forward of prompt + completion so far, i.e. the continuation
  sees exactly the context a re-prefill would (positions, padding, image), so the distribution is unchanged.
"""

import math

import pytest
import torch

from model import tokens
from model.build import build
from pipelines.formats import parse_answer
from train.rewards import score
from train.rlcs.prompts import Prompt
from train.rlcs.rollout import HFRollout, RolloutConfig

LOGIT = 40.0  # a program step's logit; every other token's is 0, so a step's choices split the mass evenly


def branching_model(texts: list[str], program: list[tuple[str, str]], default: str):
    """Hidden state = the last token's embedding (attention and MLP zeroed); each source token of the program
    gets its own basis direction, every other token the shared direction 0, which predicts `default`."""
    model, processor = build("tiny", texts)
    tok = processor.tokenizer
    vocab = tok.get_vocab()
    tid = {t: vocab[t] if t in vocab else tok.encode(t, add_special_tokens=False)[0]
           for pair in program for t in pair} | {default: tok.encode(default, add_special_tokens=False)[0]}
    assert len(set(tid.values())) == len(tid), "every program token must be its own single token"
    lm = model.model.language_model
    assert model.lm_head.weight.data_ptr() != lm.embed_tokens.weight.data_ptr()
    hidden = lm.embed_tokens.weight.shape[1]
    sources = list(dict.fromkeys(src for src, _ in program))
    with torch.no_grad():
        for layer in lm.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = lm.embed_tokens.weight
        emb.zero_()
        emb[:, 0] = 1.0
        for k, src in enumerate(sources, start=1):
            emb[tid[src]] = 0.0
            emb[tid[src], k] = 1.0
        w = torch.zeros_like(model.lm_head.weight)  # after the RMS norm a basis direction has length sqrt(hidden)
        w[tid[default], 0] = LOGIT / math.sqrt(hidden)
        for src, dst in program:
            w[tid[dst], 1 + sources.index(src)] += LOGIT / math.sqrt(hidden)
        model.lm_head.weight.copy_(w)
    return model, processor, tid


@pytest.fixture(scope="module")
def two_prompts(toy_shards):
    from train.evaluate import read_eval_samples

    samples = read_eval_samples(str(toy_shards / "*.tar"), 40)
    first = samples[0]
    other = next(s for s in samples if len(s[1][0]["content"][1]["text"]) != len(first[1][0]["content"][1]["text"]))
    return [Prompt(f"p{i}", s[1][0]["content"][1]["text"], [s[0]], s[2], "counting") for i, s in enumerate([first, other])]


def test_one_batch_holds_forced_finished_and_still_answering_rollouts(two_prompts):
    texts = ["a b d 7 \n"] * 50 + [p.question for p in two_prompts]
    E, THINK, END = tokens.EOS, tokens.THINK_BEGIN, tokens.THINK_END
    program = [("\n", THINK), (THINK, "a"), (THINK, "b"), ("b", E), ("b", END), (END, "d"), ("d", "d"),
               (tokens.ANSWER_BEGIN, tokens.BOX_BEGIN), (tokens.BOX_BEGIN, "7"), ("7", tokens.BOX_END),
               (tokens.BOX_END, tokens.ANSWER_END), (tokens.ANSWER_END, E)]  # "a" (no program): "a" again
    model, processor, tid = branching_model(texts, program, default="a")
    budget, answer = 6, 8
    engine = HFRollout(model, processor, RolloutConfig(think_budget=budget, answer_budget=answer, batch_size=64))
    groups = engine.generate(two_prompts, n=12, seed=0)

    t = tid.__getitem__
    forced_ids = processor.tokenizer.encode(END + tokens.ANSWER_BEGIN, add_special_tokens=False)
    fates = {
        "stopped": [t(THINK), t("b"), t(E)],
        "forced": [t(THINK)] + [t("a")] * (budget - 1) + forced_ids
        + [t(tokens.BOX_BEGIN), t("7"), t(tokens.BOX_END), t(tokens.ANSWER_END), t(E)],
        "answering": [t(THINK), t("b"), t(END)] + [t("d")] * (budget - 3 + answer),
    }
    seen = {k: 0 for k in fates}
    lengths = set()
    for prompt, group in zip(two_prompts, groups, strict=True):
        ids = processor(text=[processor.apply_chat_template(prompt.messages, add_generation_prompt=True,
                                                            tokenize=False)], images=prompt.images)["input_ids"][0]
        lengths.add(len(ids))
        for r in group:
            assert r.prompt_ids.tolist() == list(ids)  # left padding stripped, the right image's tokens
            fate = next((k for k, v in fates.items() if r.completion_ids == v), None)
            assert fate is not None, r.completion_ids
            seen[fate] += 1
            assert (r.forced_at, r.forced_len) == ((budget, len(forced_ids)) if fate == "forced" else (None, 0))
            assert r.finished == (fate != "answering")
            if fate == "forced":
                assert parse_answer(r.text).final == "7" and score("counting", r.text, "7").score == 1.0
                assert r.sampled_mask == [True] * budget + [False] * len(forced_ids) + [True] * 5
    assert len(lengths) == 2, "the two prompts must differ in length (left padding)"
    assert all(seen.values()), seen
    assert engine.generated_tokens == sum(len(r.completion_ids) - r.forced_len for g in groups for r in g)
    # groups larger than a batch are split across calls (5 + 5 + 2 rollouts per prompt) with the same fates
    small = HFRollout(model, processor, RolloutConfig(think_budget=budget, answer_budget=answer, batch_size=5))
    groups = small.generate(two_prompts, n=12, seed=1)
    assert [len(g) for g in groups] == [12, 12]
    assert all(any(r.completion_ids == v for v in fates.values()) for g in groups for r in g)


def test_continuation_after_forcing_matches_a_fresh_forward(two_prompts):
    model, processor = build("tiny", ["a b d 7 \n"] * 50 + [p.question for p in two_prompts])
    budget = 4
    engine = HFRollout(model, processor, RolloutConfig(temperature=1e-5, think_budget=budget, answer_budget=6,
                                                       batch_size=64))
    groups = engine.generate(two_prompts, n=2, seed=3)
    checked_after = 0
    model.eval()
    for prompt, group in zip(two_prompts, groups, strict=True):
        inputs = processor(text=[processor.apply_chat_template(prompt.messages, add_generation_prompt=True,
                                                               tokenize=False)], images=prompt.images,
                           return_tensors="pt")
        inputs.pop("token_type_ids", None)
        for r in group:
            comp = torch.tensor([r.completion_ids])
            ids = torch.cat([inputs["input_ids"], comp], 1)
            mm = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(comp)], 1)
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=mm,
                               pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"]).logits[0]
            logits[:, engine.suppress] = float("-inf")
            start = inputs["input_ids"].shape[1] - 1
            for j, (tok, sampled) in enumerate(zip(r.completion_ids, r.sampled_mask, strict=True)):
                top2 = logits[start + j].topk(2)
                if not sampled or float(top2.values[0] - top2.values[1]) < 2e-4:  # a near tie may go either way
                    continue
                assert tok == int(top2.indices[0]), (j, r.forced_at)
                checked_after += r.forced_at is not None and j >= r.forced_at + r.forced_len
    assert any(r.forced_at == budget for g in groups for r in g), "forced answering must fire"
    assert checked_after >= 5
