"""`vlmdata reward` as a user runs it: the score is the last line; --explain shows what was compared, escaped."""

import os
import subprocess
import sys
from pathlib import Path

VLMDATA = Path(sys.executable).parent / "vlmdata"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(VLMDATA), "reward", *args], capture_output=True, text=True, input=stdin,
                          timeout=300, env=env)


def test_scores_a_full_response_from_stdin():
    answer = "<think>Half of one.</think><answer>It is <|begin_of_box|>\\frac{1}{2}<|end_of_box|></answer>"
    out = run("--domain", "math", "--answer", "-", "--truth", "0.5", stdin=answer)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "1"


def test_explain_escapes_input_and_bad_domain_is_an_error():
    out = run("--domain", "physics", "--answer", "fast\x1b[2J\nvery", "--truth", "3e8 m/s", "--explain")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "0"
    assert 'extracted: "fast\\u001b[2J\\nvery"' in lines and 'reason:    "not_a_quantity"' in lines
    assert "\x1b" not in out.stdout
    bad = run("--domain", "astrology", "--answer", "1", "--truth", "1")
    assert bad.returncode == 2 and "known domains" in bad.stderr
    for timeout in ("0", "-1"):  # a usage error, not a traceback
        bad = run("--domain", "math", "--answer", "1", "--truth", "1", "--timeout", timeout)
        assert bad.returncode == 2 and "--timeout" in bad.stderr and "Traceback" not in bad.stderr
