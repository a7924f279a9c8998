"""Forced answering on a real GLM-4.1V whose weights are set by hand to follow a token program: it opens
`<think>`, then repeats one token forever; after `</think><answer>` is inserted at the thinking budget it answers
`<|begin_of_box|>7<|end_of_box|></answer>` and stops. The inserted tokens are where they should be, are not
trained on, and the answer parses and scores."""

import torch

from model import tokens
from model.build import build
from pipelines.formats import parse_answer
from train.data.encode import IGNORE
from train.rewards import score
from train.rlcs.learn import encode_rollout
from train.rlcs.prompts import Prompt
from train.rlcs.rollout import HFRollout, RolloutConfig


def programmed_model(tiny_texts, program: dict[str, str], default: str):
    model, processor = build("tiny", tiny_texts)
    tok = processor.tokenizer
    tid = {t: tok.convert_tokens_to_ids(t) if t in tok.get_vocab() else tok.encode(t, add_special_tokens=False)[0]
           for t in [*program, *program.values(), default]}
    lm = model.model.language_model
    with torch.no_grad():
        for layer in lm.layers:  # attention and MLP add nothing: the hidden state is the token's embedding
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = lm.embed_tokens.weight
        emb.normal_(0, 1.0)
        emb[:, 1:] *= 0.2 / emb[:, 1:].norm(dim=1, keepdim=True)  # every row the same norm: equal normed rows
        emb[:, 0] = 0.2  # a component every token shares: the default token's logit rides on it
        h = lm.norm(emb)
        w = torch.zeros_like(model.lm_head.weight)
        w[tid[default], 0] = 75.0 / h[:, 0].mean()  # default logit 75 everywhere; a program step's is 100
        for src, dst in program.items():
            w[tid[dst]] += 100.0 * h[tid[src]] / h[tid[src]].pow(2).sum()
        model.lm_head.weight.copy_(w)
    return model, processor


def test_forced_answering_inserts_the_tokens_and_the_answer_parses(toy_shards, tiny):
    from train.evaluate import read_eval_samples

    _, processor0 = tiny
    image, messages, _, _ = read_eval_samples(str(toy_shards / "*.tar"), 1)[0]
    prompt = Prompt("p0", messages[0]["content"][1]["text"], [image], "7", "counting")
    texts = [processor0.tokenizer.decode([i]) for i in range(300)] + ["a 7 \n"] * 50
    # the prompt's last token ("\n" after <|assistant|>) opens the thinking
    program = {"\n": tokens.THINK_BEGIN, tokens.ANSWER_BEGIN: tokens.BOX_BEGIN,  # other tokens: "a" (default)
               tokens.BOX_BEGIN: "7", "7": tokens.BOX_END, tokens.BOX_END: tokens.ANSWER_END,
               tokens.ANSWER_END: tokens.EOS}
    model, processor = programmed_model(texts, program, default="a")
    nl = processor.tokenizer.encode("\n", add_special_tokens=False)[0]
    engine = HFRollout(model, processor, RolloutConfig(think_budget=6, answer_budget=8, batch_size=8))
    groups = engine.generate([prompt], n=3, seed=0)
    forced_ids = processor.tokenizer.encode(tokens.THINK_END + tokens.ANSWER_BEGIN, add_special_tokens=False)
    for r in groups[0]:
        assert r.prompt_ids[-1] == nl
        assert r.forced_at == 6 and r.completion_ids[6:6 + len(forced_ids)] == forced_ids
        assert r.finished
        assert r.text.startswith("<think>a") and r.text.endswith("<|begin_of_box|>7<|end_of_box|></answer>"), r.text
        parsed = parse_answer(r.text)
        assert parsed.well_formed and parsed.final == "7"
        assert score("counting", r.text, "7").score == 1.0
        # the inserted tokens carry no label: the policy did not sample them
        enc = encode_rollout(prompt, r, processor, model.config)
        start = len(r.prompt_ids) - 1
        labels = enc.labels[start:start + len(r.completion_ids)].tolist()
        assert labels[:6] == r.completion_ids[:6]
        assert labels[6:6 + len(forced_ids)] == [IGNORE] * len(forced_ids)
        assert labels[6 + len(forced_ids):] == r.completion_ids[6 + len(forced_ids):]
    assert engine.generated_tokens == sum(len(r.completion_ids) - len(forced_ids) for r in groups[0])
