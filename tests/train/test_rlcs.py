"""RLCS algorithm pieces against hand-computed values: advantages and loss, expansion ratio and its EMA, tier
updates and the sampler's weights (the chance that a prompt's group is informative), exact sampler resume."""

import math

import numpy as np
import pytest
import torch

from train.rlcs.dynamic import DynamicConfig, ExpansionTracker, select_groups
from train.rlcs.grpo import clipped_token_objective, group_advantages, grpo_loss
from train.rlcs.sampler import CurriculumSampler, SamplerConfig, beta_moment, informative_chance
from train.rlcs.tiers import TIERS, tier_midpoint, tier_of


def test_group_advantages_by_hand():
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]]))
    s = math.sqrt(1 / 3)  # unbiased std of (1, 0, 0, 1)
    assert torch.allclose(adv[0], torch.tensor([0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s]), atol=1e-5)
    assert torch.equal(adv[1], torch.zeros(4))  # no signal: all equal
    s3 = math.sqrt((0.75**2 + 3 * 0.25**2) / 3)
    assert torch.allclose(adv[2], torch.tensor([0.75, -0.25, -0.25, -0.25]) / s3, atol=1e-5)
    assert torch.allclose(group_advantages(torch.tensor([[1.0, 0.0]]), scale=False), torch.tensor([[0.5, -0.5]]))


def test_clip_higher_token_objective_by_hand():
    ratio = torch.tensor([1.5, 1.5, 0.5, 0.5, 1.1])
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0, 2.0])
    loss, clipped = clipped_token_objective(ratio.log(), torch.zeros(5), adv, 0.2, 0.28)
    # A>0: min(1.5, 1.28) = 1.28; A<0: min(-1.5, -1.28) = -1.5; ratio 0.5: min(0.5, 0.8); min(-0.5, -0.8); inside
    assert torch.allclose(loss, torch.tensor([-1.28, 1.5, -0.5, 0.8, -2.2]), atol=1e-5)
    assert clipped.tolist() == [True, False, False, True, False]


def test_loss_is_averaged_per_sample_not_per_token():
    # sample 0 has three tokens, sample 1 one; ratio 1 everywhere, so each token's loss is -A
    logp = torch.zeros(4, requires_grad=True)
    adv = torch.tensor([1.0, 1.0, 1.0, -2.0])
    idx = torch.tensor([0, 0, 0, 1])
    loss, stats = grpo_loss(logp, logp.detach(), adv, idx, 2)
    assert float(loss.detach()) == pytest.approx((-1.0 + 2.0) / 2)  # per token it would be (-3 + 2) / 4
    loss.backward()
    # d loss / d logp: sample 0's tokens share 1/2 between three, sample 1's token gets 1/2 alone
    assert torch.allclose(logp.grad, torch.tensor([-1 / 6, -1 / 6, -1 / 6, 1.0]))
    assert stats["clip_fraction"] == 0.0


def test_expansion_ratio_and_ema_by_hand():
    assert ExpansionTracker.observed(0.5, 4.0) == 2.0
    assert ExpansionTracker.observed(0.8, 4.0) == 4.0  # 5 capped
    assert ExpansionTracker.observed(1.0, 4.0) == 4.0  # no valid group at all
    t = ExpansionTracker(DynamicConfig(ema=0.3, max_ratio=4.0))
    assert t.prompts_to_draw(8) == 8
    assert t.update(0.5) == pytest.approx(0.7 * 1.0 + 0.3 * 2.0)
    assert t.prompts_to_draw(8) == math.ceil(8 * 1.3)
    assert t.update(0.0) == pytest.approx(0.7 * 1.3 + 0.3 * 1.0)
    t2 = ExpansionTracker(DynamicConfig(ema=0.3))
    t2.load_state_dict(t.state_dict())
    assert t2.ratio == t.ratio
    assert ExpansionTracker(DynamicConfig(enabled=False)).prompts_to_draw(8) == 8


def test_select_keeps_the_most_balanced_valid_groups_up_to_the_batch():
    rewards = [[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]]
    assert select_groups(rewards, 2) == [1, 2]  # 2 (mean .5), then 1 and 4 tie at .25: draw order decides
    assert select_groups(rewards, 10) == [1, 2, 4]  # no refill: only valid groups
    assert select_groups([[0, 0], [1, 1]], 4) == []


def test_rates_map_to_tiers_at_their_bounds_as_the_distillation_names_them():
    from synth.distill.checks import tier as distill_tier

    # the bounds by hand: very_easy >= 0.9 > easy >= 0.6 > medium >= 0.3 > hard >= 0.101 > very_hard > 0 = unsolved
    expected = {1.0: "very_easy", 0.9: "very_easy", 0.8999: "easy", 0.6: "easy", 0.5999: "medium", 0.3: "medium",
                0.2999: "hard", 0.101: "hard", 0.1: "very_hard", 0.01: "very_hard", 1e-6: "very_hard", 0.0: "unsolved"}
    for p, name in expected.items():
        assert tier_of(p) == name, p
        assert distill_tier(p) == name, p  # the offline tiers the sampler starts from use the same bounds
    assert distill_tier(None) == "unverifiable"
    assert [n for n, _ in TIERS] == ["very_easy", "easy", "medium", "hard", "very_hard"]
    # a tier without a measured rate starts at the middle of its range
    assert [tier_midpoint(n) for n in ("very_easy", "easy", "medium", "unsolved")] == pytest.approx([0.95, 0.75, 0.45, 0.0])


def test_informative_chance_by_hand():
    # uniform prior Beta(1, 1): E[p^2] = 1/2 * 2/3 = 1/3, so a pair is split with chance 1 - 1/3 - 1/3
    assert beta_moment(1, 1, 2) == pytest.approx(1 / 3)
    assert informative_chance(1, 1, 2) == pytest.approx(1 / 3)  # = 2 * integral of p (1 - p)
    # Beta(2.5, 0.5): E[p^2] = 2.5/3 * 3.5/4, E[(1-p)^2] = 0.5/3 * 1.5/4
    assert informative_chance(2.5, 0.5, 2) == pytest.approx(1 - 2.5 / 3 * 3.5 / 4 - 0.5 / 3 * 1.5 / 4)
    # a known rate (much evidence): 1 - p^G - (1 - p)^G, highest in the middle, 0 at the ends
    for p in (0.1, 0.5, 0.8):
        assert informative_chance(p * 1e6, (1 - p) * 1e6, 8) == pytest.approx(1 - p**8 - (1 - p) ** 8, abs=1e-4)
    assert informative_chance(1e6, 1e-9, 8) == pytest.approx(0.0, abs=1e-6)


def test_sampler_weights_by_hand_and_prompts_move_with_groups():
    # G = 2, Jeffreys prior 0.5, an offline pass rate counts as 2 rollouts; prompt 2 has no measured rate
    s = CurriculumSampler(["very_easy", "medium", "medium", "unsolved"], group_size=2, pass_rates=[1.0, 0.5, None, 0.0],
                          cfg=SamplerConfig(prompt_ema=0.5, tier_ema=0.3, min_weight=0.02, offline_rollouts=2))
    q_end = 1 - 2.5 / 3 * 3.5 / 4 - 0.5 / 3 * 1.5 / 4  # p 1 or 0 seen over 2 rollouts: Beta(2.5, .5), Beta(.5, 2.5)
    q_half = 1 - 2 * (1.5 / 3 * 2.5 / 4)  # p .5 over 2 rollouts: Beta(1.5, 1.5)
    q_none = 1 - 2 * (0.5 / 1 * 1.5 / 2)  # the tier's midpoint as a guess, no evidence: Beta(.5, .5)
    assert s.prompt_weights().tolist() == pytest.approx([q_end, q_half, q_none, q_end])
    total = 2 * q_end + q_half + q_none
    w = s.weights()
    assert w["very_easy"] == pytest.approx(q_end / total) and w["unsolved"] == pytest.approx(q_end / total)
    assert w["medium"] == pytest.approx((q_half + q_none) / total) and w["easy"] == 0.0
    # the unsolved prompt's group failed again: fails .5 * 2 + 2 = 3 -> Beta(.5, 3.5): its weight falls
    # a medium prompt's group passed: rate .5 * .5 + .5 * 1 = .75 -> easy; passes .5 * 1 + 2, fails .5 * 1 -> Beta(3, 1)
    assert s.update([3, 1], [0.0, 1.0]) == {"moved": 1}
    assert (s.passes[3], s.fails[3]) == pytest.approx((0.0, 3.0)) and s.pass_rate[1] == pytest.approx(0.75)
    assert (s.passes[1], s.fails[1]) == pytest.approx((2.5, 0.5))
    assert s.tiers[1] == "easy" and s.population()["easy"] == 1 and s.population()["medium"] == 1
    assert s.tier_accuracy["medium"] == pytest.approx(0.7 * 0.45 + 0.3 * 1.0)
    pw = s.prompt_weights()
    assert pw[3] == pytest.approx(1 - 3.5 / 4 * 4.5 / 5 - 0.5 / 4 * 1.5 / 5)
    assert pw[1] == pytest.approx(1 - 3 / 4 * 4 / 5 - 1 / 4 * 2 / 5)  # = 0.3: known to pass, it falls too
    # the floor: never starved
    floored = CurriculumSampler(["unsolved"], 2, SamplerConfig(min_weight=0.3), pass_rates=[0.0])
    assert floored.prompt_weights().tolist() == [0.3]


def test_draws_avoid_prompts_known_to_give_all_equal_groups():
    # five prompts known (64 rollouts) never to pass, five known to pass half the time; G = 8
    rates = [0.0] * 5 + [0.5] * 5
    s = CurriculumSampler([tier_of(p) for p in rates], 8, SamplerConfig(offline_rollouts=64), pass_rates=rates, seed=3)
    dead, live = informative_chance(0.5, 64.5, 8), informative_chance(32.5, 32.5, 8)
    assert dead < 0.1 < 0.95 < live
    draws = [i for _ in range(500) for i in s.draw(2)]
    share = sum(i < 5 for i in draws) / len(draws)
    assert share == pytest.approx(dead / (dead + live), abs=0.03)
    assert s.expected_informative([0, 5]) == pytest.approx((dead + live) / 2)
    # within one draw no prompt repeats while unused ones are left; a draw larger than the set covers all of it
    assert sorted(s.draw(10)) == list(range(10))
    assert set(s.draw(13)) == set(range(10))


def test_answer_balance_keeps_each_sources_weight_and_splits_it_by_answer():
    # colour: three "red" prompts the policy passes half the time (mixed groups) and one "blue" it never passes; count:
    # one prompt half passed and one never, each the only prompt with its answer. G = 8, every rate known from 64
    # rollouts.
    rates = [0.5, 0.5, 0.5, 0.0, 0.5, 0.0]
    strata = [("colour", "red")] * 3 + [("colour", "blue"), ("count", "2"), ("count", "3")]
    cfg = dict(offline_rollouts=64)
    plain = CurriculumSampler([tier_of(p) for p in rates], 8, SamplerConfig(**cfg), pass_rates=rates, strata=strata)
    bal = CurriculumSampler([tier_of(p) for p in rates], 8, SamplerConfig(balance="answer", **cfg), pass_rates=rates,
                            strata=strata, seed=5)
    w, b = plain.prompt_weights(), bal.prompt_weights()
    live, dead = informative_chance(32.5, 32.5, 8), max(0.02, informative_chance(0.5, 64.5, 8))
    assert w.tolist() == pytest.approx([live] * 3 + [dead, live, dead])
    assert b[:4].sum() == pytest.approx(w[:4].sum()) and b[4:].sum() == pytest.approx(w[4:].sum())  # sources keep theirs
    assert b[3] == pytest.approx(w[:4].sum() / 4)  # blue: one prompt of four gets a quarter of colour's weight
    assert b[:3].tolist() == pytest.approx([w[:4].sum() * 3 / 4 / 3] * 3)  # red: equal weights stay equal
    # answers of one prompt each (free-form answers) are pooled: the curriculum's weights stay as they are
    assert b[4:].tolist() == pytest.approx(w[4:].tolist()) and b[4] > 10 * b[5]
    draws = [i for _ in range(2000) for i in bal.draw(1)]
    assert sum(i == 3 for i in draws) / len(draws) == pytest.approx(b[3] / b.sum(), abs=0.02)
    assert b[3] / b.sum() > 5 * w[3] / w.sum()  # the blue prompt is drawn over five times as often as without balance
    with pytest.raises(ValueError, match="strata"):
        CurriculumSampler(["medium"] * 2, 8, strata=[("a", "b")])


def test_answer_balance_is_the_formula_per_prompt_on_a_random_set():
    """Weight of prompt i in source s and stratum a: W_s * n_a / n_s * w_i / W_a (0 when the stratum weighs 0), with
    W and n the sums and counts of the curriculum's weights; here with a zero tier_prior so some strata weigh 0."""
    rng = np.random.default_rng(3)
    n = 400
    rates = rng.random(n).tolist()
    strata = [(f"s{rng.integers(3)}", str(rng.integers(6))) for _ in range(n)] + [("lone", "x")] + [("s0", "z")] * 3
    rates += [0.5, 0.99, 0.99, 0.99]
    tiers = [tier_of(p) for p in rates]
    cfg = dict(min_weight=0.0, tier_prior={"very_easy": 0.0}, offline_rollouts=16)
    w = CurriculumSampler(tiers, 8, SamplerConfig(**cfg), pass_rates=rates, strata=strata).prompt_weights()
    bal = CurriculumSampler(tiers, 8, SamplerConfig(balance="answer", **cfg), pass_rates=rates, strata=strata)
    b = bal.prompt_weights()
    expected = []
    for i, key in enumerate(bal.strata):
        in_source = [j for j, k in enumerate(bal.strata) if k[0] == key[0]]
        in_stratum = [j for j, k in enumerate(bal.strata) if k == key]
        stratum_w = sum(w[j] for j in in_stratum)
        expected.append(sum(w[j] for j in in_source) * len(in_stratum) / len(in_source) * w[i] / stratum_w
                        if stratum_w > 0 else 0.0)
    assert any(x == 0 for x in expected) and sum(x > 0 for x in expected) > n / 2  # both cases are present
    assert b.tolist() == pytest.approx(expected, rel=1e-12, abs=0)


def test_uniform_sampler_ignores_tiers():
    s = CurriculumSampler(["very_easy"] * 3 + ["medium"], 4, SamplerConfig(curriculum=False))
    assert s.weights()["very_easy"] == pytest.approx(0.75)
    assert sorted(s.draw(4)) == [0, 1, 2, 3]  # a permutation: every prompt once


def test_sampler_resumes_exactly(tmp_path):
    tiers = ["very_easy", "easy", "medium", "hard", "very_hard", "unsolved"] * 5
    a = CurriculumSampler(tiers, 8, seed=7)
    rng = torch.Generator().manual_seed(0)
    for _ in range(3):
        idx = a.draw(6)
        a.update(idx, torch.rand(6, generator=rng).tolist())
    torch.save(a.state_dict(), tmp_path / "sampler.pt")
    after_a = []
    for _ in range(3):
        idx = a.draw(6)
        after_a.append((idx, a.weights()))
        a.update(idx, [0.5] * 6)
    b = CurriculumSampler(tiers, 8, seed=123)
    b.load_state_dict(torch.load(tmp_path / "sampler.pt", weights_only=False))
    after_b = []
    for _ in range(3):
        idx = b.draw(6)
        after_b.append((idx, b.weights()))
        b.update(idx, [0.5] * 6)
    assert after_a == after_b
    assert b.state_dict()["tiers"] == a.state_dict()["tiers"]
    with pytest.raises(ValueError, match="prompts"):
        CurriculumSampler(tiers[:3], 8).load_state_dict(a.state_dict())
