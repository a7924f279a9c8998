"""Long-CoT distillation: every check on hand-written responses; the flow end to end against a scripted
OpenAI-compatible server on loopback (known right/wrong/malformed answers → exact pass@k, tiers and RL set) and
against `vlmdata serve-model --model tiny` through the CLI (a real model over real HTTP; its answers fail)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from aiohttp import web

from pipelines.codec import decode_sample, tarfile_samples
from pipelines.formats import build_answer
from synth import distill
from synth.distill.checks import counts_as_pass, format_problem, is_verifiable, tier
from synth.distill.quality import mixed_language, repetition
from tests.aio import serve_in_thread
from tests.model.test_serve import running_server

REPO = Path(__file__).resolve().parents[2]
PROMPTS = distill.DEMO_PROMPTS


# ---------------------------------------------------------------- checks on hand-written responses

def test_format_rules():
    good = build_answer("There are three.", think="I count 1, 2, 3.", boxed="3")
    assert format_problem(good, verifiable=True) is None
    assert format_problem(good, verifiable=True, finish_reason="length") == "truncated"
    assert format_problem("The answer is 3", verifiable=True) == "format:no_tags"
    assert format_problem(build_answer("three", boxed="3"), verifiable=True) == "format:no_think"
    assert format_problem(build_answer("no box here", think="hm"), verifiable=True) == "format:no_box"
    two = "<think>a</think><answer><|begin_of_box|>3<|end_of_box|> or <|begin_of_box|>4<|end_of_box|></answer>"
    assert format_problem(two, verifiable=True) == "format:several_boxes"
    assert format_problem(good, verifiable=False) == "format:box_on_open_task"
    assert format_problem(build_answer("A blue square.", think="look"), verifiable=False) is None
    repeated = "<think>a</think><think>b</think><answer>x</answer>"
    assert format_problem(repeated, verifiable=False).startswith("format:repeated_tag")
    missing_end = "<think>a<answer><|begin_of_box|>3<|end_of_box|></answer>"
    assert format_problem(missing_end, verifiable=True).startswith("format:")


def test_mixed_language_repetition_and_tiers():
    assert mixed_language("First add 17 and 25 to get 42, which is the sum.") is None
    assert mixed_language("We compute the angle θ = π/2 using $\\alpha + \\beta$.") is None  # Greek maths letters
    assert mixed_language("First we add the numbers, 然后我们得到答案是四十二 and check it.").startswith("mixed_language:")
    # a quoted term in another script is not a drift
    assert mixed_language("The sign says 出口, which means exit; the arrow points left towards the door.") is None
    assert repetition("Let me count the squares one by one carefully and write the total.") is None
    assert repetition("wait " * 12).startswith("char_loop")
    loop = "so the answer is three so the answer is three " * 6
    assert repetition(loop, ngram=8, max_repeats=4).startswith(("ngram_loop", "char_loop"))
    assert repetition("-" * 40 + " a table rule") is None
    assert [tier(p) for p in (1.0, 0.75, 0.5, 0.25, 0.1, 0.0, None)] == \
        ["very_easy", "easy", "medium", "hard", "very_hard", "unsolved", "unverifiable"]
    assert is_verifiable("math", "42") and not is_verifiable("math", None) and not is_verifiable("open", "x")
    assert counts_as_pass("kept", None) and counts_as_pass("dropped", "mixed_language:latin+cjk")
    assert not counts_as_pass("dropped", "wrong_answer:mismatch") and not counts_as_pass("dropped", "format:no_box")
    assert not counts_as_pass("error", "teacher_error")


# ---------------------------------------------------------------- a scripted teacher over loopback HTTP

def _r(think: str, answer: str, box: str | None = None) -> str:
    return build_answer(answer, think=think, boxed=box)


SCRIPT = {  # question prefix → the k=2 choices the teacher answers
    "How many blue squares": [_r("I count 1, 2, 3 squares.", "There are ", "3"),
                              _r("Three blue squares in a row.", "Count: ", "3")],
    "What is 17 + 25": [_r("17 + 25 = 42.", "The sum is ", "42"), _r("17 + 25 = 41.", "The sum is ", "41")],
    "What colour is the circle": ["The circle is blue, C.",
                                  "<think>blue</think><answer><|begin_of_box|>C<|end_of_box|><|begin_of_box|>B"
                                  "<|end_of_box|></answer>"],
    "Describe the picture": [_r("Look at it.", "Three blue squares and a red dot."), _r("Look.", "Squares.", "3")],
    "A rectangle is 6 cm": [_r("Area is 6 times 4, 然后我们得到答案是二十四平方厘米.", "The area is ", "24"),
                            _r("6 x 4 = 24. " + "so the area is twenty four " * 8, "The area is ", "24")],
}


@contextmanager
def scripted_teacher() -> Iterator[str]:
    seen: list[dict] = []

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        text = "".join(p.get("text", "") for p in body["messages"][-1]["content"] if p["type"] == "text")
        choices = next(v for k, v in SCRIPT.items() if text.startswith(k))[: body.get("n", 1)]
        return web.json_response({"id": "x", "object": "chat.completion", "model": "scripted",
                                  "choices": [{"index": i, "message": {"role": "assistant", "content": c},
                                               "finish_reason": "stop"} for i, c in enumerate(choices)],
                                  "usage": {"prompt_tokens": 10, "completion_tokens": 20}})

    app = web.Application()
    app.add_routes([web.get("/v1/models", models), web.post("/v1/chat/completions", chat)])
    with serve_in_thread(app) as url:
        yield f"{url}/v1"


def kept_samples(out: Path) -> list[dict]:
    tars = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    return [decode_sample(s) for s in tarfile_samples(tars)]


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("distill-scripted") / "out"
    with scripted_teacher() as url:
        report = distill.run(str(PROMPTS), str(out), teacher=url, k=2,
                             overrides={"engine.name": "local", "engine.workers": 0})
    return out, report


def test_scripted_teacher_gives_exact_pass_at_k_tiers_and_reasons(scripted_run):
    out, report = scripted_run
    ledger = pq.read_table(out / "ledger.parquet").to_pylist()
    prompts = [r for r in ledger if r["parent"] is None]
    samples = [r for r in ledger if r["parent"] is not None]
    assert len(prompts) == 5 and all(r["reason"] == "expanded:2" for r in prompts)
    assert len(samples) == 10 and {r["parent"] for r in samples} == {r["key"] for r in prompts}
    reasons = Counter((r["status"], (r["reason"] or "").split(":")[0]) for r in samples)
    assert reasons == Counter({("kept", ""): 4, ("dropped", "wrong_answer"): 1, ("dropped", "format"): 3,
                               ("dropped", "mixed_language"): 1, ("dropped", "repetition"): 1})
    rl = {r["id"]: r for r in pq.read_table(out / "rl_prompts.parquet").to_pylist()}
    assert set(rl) == {"count-squares", "sum", "circle-colour", "area"}  # `describe` is open-ended
    assert {i: (r["pass_at_k"], r["difficulty"]) for i, r in rl.items()} == {
        "count-squares": (1.0, "very_easy"), "sum": (0.5, "medium"), "circle-colour": (0.0, "unsolved"),
        "area": (1.0, "very_easy")}  # right answers dropped for style still count towards pass@k
    assert rl["count-squares"]["images"][0]["bytes"].startswith(b"\x89PNG") and rl["sum"]["images"] == []
    assert report["too_easy"] == 2 and report["unsolved"] == 1 and report["unverifiable"] == 1
    stats = json.loads((out / "stats.json").read_text())
    assert stats["distill"] == report


def test_sft_samples_carry_messages_and_difficulty(scripted_run):
    out, _ = scripted_run
    samples = kept_samples(out)
    assert len(samples) == 4
    by_q = {s["json"]["messages"][0]["content"][-1]["text"]: s for s in samples}
    squares = next(s for q, s in by_q.items() if q.startswith("How many"))
    user, assistant = squares["json"]["messages"]
    assert user["content"][0]["type"] == "image" and "png" in squares  # image + question → the full response
    assert assistant["content"][0]["text"] == SCRIPT["How many blue squares"][squares["json"]["sample_index"]]
    assert squares["json"]["difficulty"] == "very_easy" and squares["json"]["pass_at_k"] == 1.0
    assert squares["json"]["verdict"] == "match" and squares["json"]["teacher_model"] == "scripted"
    total = next(s for q, s in by_q.items() if q.startswith("What is 17"))
    assert total["json"]["messages"][0]["content"][0]["type"] == "text"  # a text-only prompt has no image part
    assert total["json"]["pass_at_k"] == 0.5 and total["json"]["difficulty"] == "medium"
    describe = next(s for q, s in by_q.items() if q.startswith("Describe"))
    assert describe["json"]["difficulty"] == "unverifiable" and "pass_at_k" not in describe["json"]


# ---------------------------------------------------------------- the CLI against the real tiny model

@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_server("--model", "tiny") as url:
        yield url


def test_cli_distill_against_serve_model(server, prefect_server, tmp_path):
    out = tmp_path / "out"
    script = Path(sys.executable).parent / "vlmdata"
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(script), "synth", "distill", "--prompts", str(PROMPTS), "--teacher", server,
                           "--model", "tiny", "--k", "2", "--output", str(out), "--engine", "local",
                           "--set", "stages.0.max_tokens=12", "--set", "engine.workers=1"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "unsolved" in proc.stdout and "RL prompt set" in proc.stdout
    ledger = pq.read_table(out / "ledger.parquet").to_pylist()
    prompts = [r for r in ledger if r["parent"] is None]
    samples = [r for r in ledger if r["parent"] is not None]
    assert len(prompts) == 5 and len(samples) == 10
    assert {r["parent"] for r in samples} == {r["key"] for r in prompts}
    # A random tiny model writes neither tags nor boxes: every sample is dropped with a format reason.
    assert all(r["status"] == "dropped" and r["reason"].startswith(("format:", "truncated")) for r in samples)
    rl = pq.read_table(out / "rl_prompts.parquet").to_pylist()
    assert len(rl) == 4 and {r["difficulty"] for r in rl} == {"unsolved"} and all(r["k"] == 2 for r in rl)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["distill"]["unsolved"] == 4 and stats["distill"]["too_easy"] == 0


def test_a_prompt_with_an_image_that_cannot_be_read_stays_out_of_the_rl_set(tmp_path):
    from synth.distill.rlset import _images

    (tmp_path / "a.png").write_bytes(b"\x89PNG pixels")
    assert [i["path"] for i in _images(["a.png"], str(tmp_path))] == ["a.png"]
    assert _images(["a.png", "gone.png"], str(tmp_path)) is None  # not a prompt that lost one of its images
    assert _images([7], str(tmp_path)) is None and _images([], str(tmp_path)) == []
