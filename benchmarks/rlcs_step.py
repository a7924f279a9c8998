"""One RLCS iteration's time split (rollout, reward, learn) and rollout tokens/s against plain `generate` on the
same prompts with the same sampling and budget (target: ratio >= 0.9), measured in one run."""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from model.attention import use_default_attention  # noqa: E402
from model.build import build, load  # noqa: E402
from synth.toy_reasoning import ToyConfig, generate  # noqa: E402
from train.rewards import RewardPool  # noqa: E402
from train.rlcs.grpo import group_advantages  # noqa: E402
from train.rlcs.learn import encode_rollout, policy_step  # noqa: E402
from train.rlcs.prompts import TOY_DOMAINS, Prompt  # noqa: E402
from train.rlcs.rollout import HFRollout, RolloutConfig  # noqa: E402


def plain_generate_tokens(model, processor, prompts: list[Prompt], n: int, max_new: int, stop: list[int]) -> int:
    """transformers generate on the same rows (each prompt n times), sampled at T=1, top-p 1; generated tokens."""
    processor.tokenizer.padding_side = "left"
    rows = [p for p in prompts for _ in range(n)]
    texts = [processor.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=False) for p in rows]
    inputs = processor(text=texts, images=[im for p in rows for im in p.images], padding=True, return_tensors="pt")
    inputs.pop("token_type_ids", None)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                             eos_token_id=stop, pad_token_id=processor.tokenizer.pad_token_id)
    total = 0
    for row in out[:, inputs["input_ids"].shape[1]:].tolist():
        total += next((j + 1 for j, t in enumerate(row) if t in stop), len(row))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None, help="saved model folder (default: a fresh tiny model)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--think-budget", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="torch threads (default: all cores; on a machine others load, 1 avoids idle-spinning "
                         "thread barriers that make every small op wait for a second core)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, args.threads))
    samples = list(generate(ToyConfig(samples=max(200, args.prompts), seed=5, split="train")))
    if args.model:
        model, processor = load(args.model)
    else:
        model, processor = build("tiny", [s["caption"] for s in samples] + [s["messages"][1]["content"] for s in samples])
    use_default_attention(model)
    prompts = [Prompt(str(i), s["messages"][0]["content"][1]["text"], [s["image"]], s["answer"],
                      TOY_DOMAINS[s["task"]], dataset=s["task"]) for i, s in enumerate(samples[: args.prompts])]
    engine = HFRollout(model, processor, RolloutConfig(think_budget=args.think_budget, answer_budget=16,
                                                       batch_size=args.prompts * args.group))
    # warm both paths up (first-call costs: kernels, lazy imports) before anything is timed
    engine.generate(prompts[:2], 2, seed=-1)
    plain_generate_tokens(model, processor, prompts[:2], 2, 4, engine.stop_ids)
    ours, plain, forced = [], [], []

    def run_ours(rep: int) -> None:
        nonlocal groups
        t0, tok0 = time.perf_counter(), engine.generated_tokens
        groups = engine.generate(prompts, args.group, seed=rep)
        ours.append(((engine.generated_tokens - tok0), time.perf_counter() - t0))
        forced.append(sum(r.forced_at is not None for g in groups for r in g))

    def run_plain(rep: int) -> None:
        t0 = time.perf_counter()
        n = plain_generate_tokens(model, processor, prompts, args.group, args.think_budget + 16, engine.stop_ids)
        plain.append((n, time.perf_counter() - t0))

    groups = []
    for rep in range(args.repeats):  # alternate which goes first, so load on the machine hits both alike
        for f in (run_ours, run_plain) if rep % 2 == 0 else (run_plain, run_ours):
            f(rep)
    t_roll = ours[-1][1]
    with RewardPool(workers=1, context="forkserver", domains=sorted({p.domain for p in prompts})) as pool:
        # the run's pool lives across iterations: start its workers (first task) before timing one iteration's
        pool.score([(p.domain, "", p.answer) for p in {p.domain: p for p in prompts}.values()])
        t0 = time.perf_counter()
        v = pool.score([(p.domain, r.text, p.answer) for p, g in zip(prompts, groups, strict=True) for r in g])
        t_reward = time.perf_counter() - t0
    rewards = torch.tensor([[x.score for x in v[i * args.group:(i + 1) * args.group]] for i in range(len(prompts))])
    adv = group_advantages(rewards + torch.rand_like(rewards) * 1e-3)  # a fresh model scores ~0: learn on all
    t0 = time.perf_counter()
    enc = [encode_rollout(p, r, processor, model.config) for p, g in zip(prompts, groups, strict=True) for r in g]
    policy_step(model, enc, adv.flatten().tolist(), micro=32, pad_id=processor.tokenizer.pad_token_id, eps_low=0.2,
                eps_high=0.28, attention="sdpa")
    t_learn = time.perf_counter() - t0
    total = t_roll + t_reward + t_learn
    print(f"one iteration ({args.prompts} prompts x {args.group} rollouts, think budget {args.think_budget}): "
          f"{total:.1f} s = rollout {t_roll / total:.0%}, reward {t_reward / total:.0%}, learn {t_learn / total:.0%}")
    ours_tps = sum(n for n, _ in ours) / sum(t for _, t in ours)
    plain_tps = sum(n for n, _ in plain) / sum(t for _, t in plain)
    print(f"rollout tokens/s: rlcs {ours_tps:.0f} vs plain generate {plain_tps:.0f} on the same prompts: "
          f"ratio {ours_tps / plain_tps:.2f} (target >= 0.9); per repeat "
          + ", ".join(f"{(a / ta) / (b / tb):.2f}" for (a, ta), (b, tb) in zip(ours, plain, strict=True))
          + f"; forced answering fired in {'/'.join(map(str, forced))} of {len(prompts) * args.group} rollouts; "
          f"{torch.get_num_threads()} torch threads, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
