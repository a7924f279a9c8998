"""RLCS on the trainer's loop: `RLStep` is the RL kind of `train.loop.Step` (as `SupervisedStep` is pretraining's
and SFT's), so clipping, the optimiser and schedule, checkpoints with the sampler's state, resume, metrics and the
wall budget are the ones every kind of training shares; `train_rlcs` sets up the start, the model and the pool."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable

import torch

from model.attention import use_default_attention
from model.build import load, save
from train.checkpoint import Checkpointer
from train.dist import init_distributed
from train.evaluate import generate_answers, read_eval_samples, score_answers
from train.loop import LoopConfig, resume, run_loop
from train.metrics import MetricsLogger
from train.optim import build_optimizer, build_scheduler
from train.rewards import RewardPool
from train.rlcs.config import RLCSConfig
from train.rlcs.dynamic import ExpansionTracker, is_valid, select_groups
from train.rlcs.grpo import group_advantages
from train.rlcs.learn import encode_rollout, policy_step
from train.rlcs.prompts import from_parquet
from train.rlcs.rollout import make_rollout
from train.rlcs.sampler import CurriculumSampler
from train.rlcs.start import ToyWriter, ensure_start
from train.rlcs.tiers import TIER_NAMES
from train.trainer import seed_all


def heldout_accuracy(model, processor, samples, cfg: RLCSConfig) -> dict:
    was = model.training
    model.eval()
    use_default_attention(model)
    outputs = generate_answers(model, processor, samples, cfg.eval.batch_size, cfg.eval.max_new_tokens)
    if was:
        model.train()
    r = score_answers(samples, outputs)
    return {k: r[k] for k in ("accuracy", "per_task", "majority_baseline", "n")}


def train_rlcs(cfg: RLCSConfig, log: Callable[[str], None] = print, write_toy: ToyWriter | None = None) -> dict:
    """Runs (or resumes) to cfg.run.steps iterations; returns the last iteration's metrics."""
    out, run = cfg.run.output, cfg.run
    out.mkdir(parents=True, exist_ok=True)
    start = ensure_start(cfg, log, write_toy)
    (out / "config.json").write_text(cfg.model_dump_json(indent=1))
    (out / "start.json").write_text(json.dumps(start.__dict__, indent=1))
    dist_info = init_distributed()
    if dist_info.world > 1:
        raise SystemExit("rlcs runs on one process for now (rollouts and learning on one device)")
    if run.cpu_threads and dist_info.device.type == "cpu":
        torch.set_num_threads(run.cpu_threads)
    seed_all(run.seed)
    model, processor = load(start.model)
    model.to(dist_info.device)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, run.steps, cfg.optim)
    prompts = from_parquet(start.prompts)
    if not prompts:
        raise SystemExit(f"rlcs: no usable prompt in {start.prompts}")
    g = cfg.grpo.group_size
    sampler = CurriculumSampler([p.tier for p in prompts], g, cfg.sampler, run.seed, [p.pass_rate for p in prompts],
                                strata=[(p.dataset or p.domain, p.answer) for p in prompts])
    tracker = ExpansionTracker(cfg.dynamic)
    ckpt = Checkpointer(out / "checkpoints", dist_info, run.keep_checkpoints)
    heldout = read_eval_samples(start.heldout, cfg.eval.limit) if start.heldout else []
    impl = RLStep(cfg, model, processor, prompts, sampler, tracker, heldout, dist_info, out)
    step = 0
    if (extra := resume(ckpt, model, optimizer, scheduler)) is not None:
        impl.load_state_dict(extra)
        step, saved = extra["step"], extra["checkpoint"]
        log(f"rlcs: resumed at iteration {step} from {ckpt.root / f'step-{saved}'}")
    logger = MetricsLogger(out, run.steps, step, True, run.tensorboard, run.progress, 1)
    if heldout and step == 0 and cfg.eval.at_start and not (out / "eval.jsonl").exists():
        ev = heldout_accuracy(model, processor, heldout, cfg)
        # the run's clocks (elapsed_min, cpu_min) start with its first iteration
        _append(out / "eval.jsonl", {"step": 0, "rollouts": 0, **ev, "elapsed_min": 0.0, "cpu_min": 0.0})
        log(f"rlcs: start held-out accuracy {ev['accuracy']:.3f} (majority baseline {ev['majority_baseline']['all']:.3f})")
    loop = LoopConfig(steps=run.steps, grad_clip=cfg.optim.grad_clip, ckpt_every=run.ckpt_every,
                      max_minutes=run.max_minutes)
    with RewardPool(workers=cfg.reward.workers, timeout_s=cfg.reward.timeout_s, configs=cfg.reward.configs,
                    context="forkserver", domains=sorted({p.domain for p in prompts})) as pool:
        impl.pool = pool
        m = run_loop(impl, model, optimizer, scheduler, ckpt, logger, loop, dist_info, start_step=step,
                     log=lambda line: log(f"rlcs: {line}"), resumed=extra)
    logger.close()
    if run.save_hf:
        use_default_attention(model)
        save(model, processor, out / "hf", dtype=torch.float32)
    return m


class RLStep:
    """RLCS as a `train.loop.Step`: draw prompts by tier (oversampled by the expansion ratio), roll out G per
    prompt, score with the verifiers in their timeout pool, keep the most balanced groups up to the fixed batch,
    accumulate the GRPO gradient; after the update, move tiers and weights and evaluate on the held-out set. Its
    resumable state: the curriculum sampler, the expansion tracker and the rollout count."""

    def __init__(self, cfg: RLCSConfig, model, processor, prompts: list, sampler: CurriculumSampler,
                 tracker: ExpansionTracker, heldout: list, dist_info, out) -> None:
        self.cfg, self.model, self.processor, self.prompts = cfg, model, processor, prompts
        self.sampler, self.tracker, self.heldout, self.dist, self.out = sampler, tracker, heldout, dist_info, out
        self.engine = make_rollout(cfg.rollout, model, processor)
        self.pad_id = processor.tokenizer.pad_token_id
        self.pool: RewardPool | None = None  # the run's verifier pool, set while the loop runs
        self.rollouts_total = 0

    def backward(self, step: int) -> dict:
        cfg, sampler, engine, model = self.cfg, self.sampler, self.engine, self.model
        g = cfg.grpo.group_size
        t0 = time.perf_counter()
        weights, population = sampler.weights(), sampler.population()
        n_draw = self.tracker.prompts_to_draw(cfg.grpo.batch_prompts)
        idx = sampler.draw(n_draw)
        expected_informative = sampler.expected_informative(idx)
        drawn = [self.prompts[i] for i in idx]
        drawn_tiers = [sampler.tiers[i] for i in idx]
        engine.sync(model)
        gen_tokens0 = getattr(engine, "generated_tokens", 0)
        groups = engine.generate(drawn, g, seed=cfg.run.seed * 1_000_003 + step)
        t1 = time.perf_counter()
        items = [(p.domain, r.text, p.answer) for p, grp in zip(drawn, groups, strict=True) for r in grp]
        verdicts = self.pool.score(items)
        rewards = [[verdicts[j * g + k].score for k in range(g)] for j in range(len(drawn))]
        t2 = time.perf_counter()
        passes = [sum(x >= cfg.grpo.pass_score for x in r) / g for r in rewards]
        invalid = sum(not is_valid(r) for r in rewards) / len(rewards)
        keep = select_groups(rewards, cfg.grpo.batch_prompts) if cfg.dynamic.enabled else list(range(len(drawn)))
        moved = sampler.update(idx, passes)["moved"]
        ratio = self.tracker.update(invalid)
        adv = group_advantages(torch.tensor([rewards[j] for j in keep]), scale=cfg.grpo.scale_advantages) \
            if keep else torch.zeros(0, g)
        samples, sample_adv = [], []
        for row, j in enumerate(keep):
            for k in range(g):
                if abs(float(adv[row, k])) > 0:  # zero-advantage rollouts add nothing but cost
                    samples.append(encode_rollout(drawn[j], groups[j][k], self.processor, model.config))
                    sample_adv.append(float(adv[row, k]))
        learn = {"loss": 0.0, "clip_fraction": 0.0, "loss_tokens": 0}
        if samples:
            learn = policy_step(model, samples, sample_adv, micro=cfg.grpo.micro_batch, pad_id=self.pad_id,
                                eps_low=cfg.grpo.eps_low, eps_high=cfg.grpo.eps_high, attention=cfg.run.attention,
                                device=self.dist.device)
            # the loss is a mean over the kept groups' rollouts; zero-advantage ones count in the denominator
            scale = len(samples) / (len(keep) * g)
            for p_ in model.parameters():
                if p_.grad is not None:
                    p_.grad.mul_(scale)
        self.rollouts_total += len(items)
        t3 = time.perf_counter()
        flat = [x for r in rewards for x in r]
        all_rollouts = [r for grp in groups for r in grp]
        by_tier: dict[str, list[float]] = defaultdict(list)
        by_source: dict[str, list[float]] = defaultdict(list)
        for p, t, rate in zip(drawn, drawn_tiers, passes, strict=True):
            by_tier[t].append(rate)
            by_source[p.dataset or "?"].append(rate)
        gen_tokens = getattr(engine, "generated_tokens", 0) - gen_tokens0
        return {
            "reward_mean": sum(flat) / len(flat),
            "pass_rate": sum(passes) / len(passes),
            "loss": learn["loss"] * len(samples) / max(1, len(keep) * g),
            "tier_weights": weights,
            "tier_population": population,
            "tier_accuracy": {t: sum(v) / len(v) for t, v in sorted(by_tier.items())},
            "tier_accuracy_ema": {t: sampler.tier_accuracy[t] for t in TIER_NAMES},
            "accuracy_by_source": {s: sum(v) / len(v) for s, v in sorted(by_source.items())},
            "tiers_moved": moved,
            "expansion_ratio": ratio,
            "prompts_drawn": len(drawn),
            # which prompts (indices into the RL prompt set) were drawn and which groups were learned from: how
            # concentrated the curriculum's draws are can be read off a run
            "prompt_ids": [int(i) for i in idx],
            "prompt_ids_learned": [int(idx[j]) for j in keep],
            "prompt_pass_rates": passes,  # each drawn group's pass rate, in `prompt_ids` order (why a group was kept)
            "groups_invalid_rate": invalid,
            "groups_informative_expected": expected_informative,
            "groups_kept": len(keep),
            "rollouts": len(items),
            "rollouts_total": self.rollouts_total,
            "forced": sum(r.forced_at is not None for r in all_rollouts),
            "truncated": sum(not r.finished for r in all_rollouts),
            "completion_tokens_mean": sum(len(r.completion_ids) for r in all_rollouts) / len(all_rollouts),
            "clip_fraction": learn["clip_fraction"],
            "loss_tokens": learn["loss_tokens"],
            "reward_timeouts": verdicts.stats.timeouts,
            "time_rollout_s": t1 - t0,
            "time_reward_s": t2 - t1,
            "time_learn_s": t3 - t2,
            "tokens_per_s": gen_tokens / max(1e-9, t1 - t0),
        }

    def finish(self, step: int, m: dict, seconds: float, last: bool) -> dict:
        out = {"step_time_s": seconds}
        cfg = self.cfg
        if self.heldout and ((cfg.eval.every and step % cfg.eval.every == 0) or last):
            ev = heldout_accuracy(self.model, self.processor, self.heldout, cfg)
            out["accuracy"], out["accuracy_per_task"] = ev["accuracy"], ev["per_task"]
            out["majority_baseline"] = ev["majority_baseline"]["per_task"]
            _append(self.out / "eval.jsonl", {"step": step, "rollouts": self.rollouts_total, **ev,
                                              "elapsed_min": m["elapsed_min"], "cpu_min": m["cpu_min"]})
        return out

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(), "expansion": self.tracker.state_dict(),
                "rollouts_total": self.rollouts_total}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.tracker.load_state_dict(state["expansion"])
        self.rollouts_total = state["rollouts_total"]

    def stop_reason(self) -> str | None:
        budget = self.cfg.run.max_rollouts
        return f"run.max_rollouts {budget} reached" if budget and self.rollouts_total >= budget else None

    def log_line(self, m: dict) -> str | None:
        return (f"{m['step']}/{self.cfg.run.steps}: reward {m['reward_mean']:.3f} kept {m['groups_kept']}/"
                f"{m['prompts_drawn']} ratio {m['expansion_ratio']:.2f} rollout {m['time_rollout_s']:.1f}s "
                f"reward {m['time_reward_s']:.1f}s learn {m['time_learn_s']:.1f}s"
                + (f" accuracy {m['accuracy']:.3f}" if "accuracy" in m else ""))


def _append(path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
