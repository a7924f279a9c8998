"""`vlmdata train rlcs` end to end on a tiny toy start it builds itself (a few iterations), metrics.jsonl, resume;
the toy world's held-out split is disjoint from training; `train grade` writes tiers."""

import json

import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from orchestration.train_verbs import train_app as app
from synth.toy_reasoning import ToyConfig, generate, split_of


def test_toy_heldout_split_is_disjoint_from_training():
    train = list(generate(ToyConfig(samples=400, seed=0, split="train")))
    held = list(generate(ToyConfig(samples=100, seed=977, split="heldout")))

    def key(s):
        return (s["image"].tobytes(), s["messages"][0]["content"][1]["text"])

    assert not {key(s) for s in train} & {key(s) for s in held}
    exprs = {s["caption"].split(" written")[0] for s in train if s["task"] == "arithmetic"}
    assert not exprs & {s["caption"].split(" written")[0] for s in held if s["task"] == "arithmetic"}
    assert all(split_of(s) == "heldout" for s in held) and all(split_of(s) == "train" for s in train)


def test_rlcs_cli_builds_its_start_logs_resumes_and_grades(tmp_path):
    out = tmp_path / "run"
    cfg = {
        "start": {"toy": {"train_samples": 120, "heldout_samples": 12, "pretrain_steps": 2, "sft_steps": 2,
                          "rl_prompts": 6, "grade_k": 2}},
        "grpo": {"group_size": 2, "batch_prompts": 2, "micro_batch": 8},
        "rollout": {"think_budget": 6, "answer_budget": 3, "batch_size": 16},
        "eval": {"every": 2, "limit": 12, "max_new_tokens": 8, "batch_size": 12},
        "run": {"output": str(out), "steps": 2, "ckpt_every": 1, "cpu_threads": 1},
    }
    path = tmp_path / "rlcs.yaml"
    path.write_text(yaml.safe_dump(cfg))
    runner = CliRunner()
    r = runner.invoke(app, ["rlcs", "--config", str(path)])
    assert r.exit_code == 0, r.output
    assert "building the toy SFT checkpoint" in r.output and "grading 6 toy train-split prompts" in r.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in rows] == [1, 2]
    for m in rows:
        assert 0 <= m["reward_mean"] <= 1 and m["expansion_ratio"] >= 1
        assert abs(sum(m["tier_weights"].values()) - 1) < 1e-6
        # the prompts drawn and those learned from, as indices into the 6 RL prompts
        assert len(m["prompt_ids"]) == m["prompts_drawn"] and all(0 <= i < 6 for i in m["prompt_ids"])
        assert len(m["prompt_ids_learned"]) == m["groups_kept"] and set(m["prompt_ids_learned"]) <= set(m["prompt_ids"])
        rates = m["prompt_pass_rates"]
        assert len(rates) == m["prompts_drawn"] and all(0 <= r <= 1 for r in rates)
        assert abs(sum(rates) / len(rates) - m["pass_rate"]) < 1e-9
    assert "accuracy" in rows[1] and "majority_baseline" in rows[1]
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 2]
    assert (out / "checkpoints" / "step-2" / "done").exists() and (out / "hf" / "config.json").exists()
    # resume: the start is found, not rebuilt, and the run continues at iteration 3
    r = runner.invoke(app, ["rlcs", "--config", str(path), "--steps", "3"])
    assert r.exit_code == 0, r.output
    assert "built earlier" in r.output and "resumed at iteration 2" in r.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in rows] == [1, 2, 3]
    # a rollout budget stops the run (checkpointed) once reached, whatever --steps says; wall and CPU minutes
    # carry over resumes
    budget = rows[-1]["rollouts_total"] + 1
    cfg["run"]["max_rollouts"] = budget
    path.write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["rlcs", "--config", str(path), "--steps", "50"])
    assert r.exit_code == 0, r.output
    assert "stopping at step 4: run.max_rollouts" in r.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in rows] == [1, 2, 3, 4] and rows[-1]["rollouts_total"] >= budget
    assert rows[3]["cpu_min"] > rows[2]["cpu_min"] > rows[0]["cpu_min"] > 0
    assert rows[3]["elapsed_min"] > rows[2]["elapsed_min"]
    assert (out / "checkpoints" / "step-4" / "done").exists()
    # grade: tiers from k rollouts per prompt
    graded = tmp_path / "graded.parquet"
    r = runner.invoke(app, ["grade", str(out / "hf"), "--prompts", str(out / "start" / "prompts.parquet"),
                            "--output", str(graded), "--k", "2", "--max-new-tokens", "6"])
    assert r.exit_code == 0, r.output
    t = pq.read_table(graded).to_pylist()
    assert len(t) == 6 and all(row["k"] == 2 and row["difficulty"] for row in t)
