"""Requests per second of the distillation flow (`synth.distill.run`: prompt set → teacher → checks → shards, ledger,
RL set) against a local `vlmdata serve-model` vs a plain loop of the same HTTP requests (aiohttp, same bodies, same
concurrency) against the same server; prints the ratio (target >= 0.8)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from synth import distill  # noqa: E402
from synth.distill.op import INSTRUCTION  # noqa: E402
from synth.teachers.openai_http import data_url  # noqa: E402


def start_server(model: str) -> tuple[subprocess.Popen, str]:
    script = Path(sys.executable).parent / "vlmdata"
    proc = subprocess.Popen([str(script), "serve-model", "--port", "0", "--model", model], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in proc.stdout:
        if line.startswith("serving ") and " on http" in line:
            return proc, line.rsplit(" on ", 1)[1].strip()
    raise RuntimeError(f"serve-model exited with {proc.wait()}")


def write_prompts(folder: Path, n: int) -> Path:
    demo = [json.loads(line) for line in distill.DEMO_PROMPTS.read_text().splitlines()]
    (folder / "images").mkdir(parents=True)
    for name in ("squares.png", "circle.png"):
        (folder / "images" / name).write_bytes((distill.DEMO_PROMPTS.parent / "images" / name).read_bytes())
    with open(folder / "prompts.jsonl", "w") as f:
        for i in range(n):
            rec = dict(demo[i % len(demo)])
            rec["id"] = f"{rec['id']}-{i}"
            rec["question"] = f"({i}) {rec['question']}"
            f.write(json.dumps(rec) + "\n")
    return folder / "prompts.jsonl"


async def plain_loop(url: str, bodies: list[dict], concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        async def one(body: dict) -> None:
            async with gate, s.post(f"{url}/chat/completions", json=body) as r:
                r.raise_for_status()
                await r.json()
        start = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return time.perf_counter() - start


def bodies_for(prompts: Path, k: int, max_tokens: int, model: str) -> list[dict]:
    out = []
    for line in prompts.read_text().splitlines():
        rec = json.loads(line)
        parts = [{"type": "image_url", "image_url": {"url": data_url((prompts.parent / rec["images"][0]).read_bytes())}}
                 ] if rec["images"] else []
        parts.append({"type": "text", "text": INSTRUCTION.replace("{question}", rec["question"])})
        out.append({"model": model, "messages": [{"role": "user", "content": parts}], "n": k,
                    "max_tokens": max_tokens, "temperature": 1.0, "top_p": 1.0, "seed": 0})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="tiny", help="serve-model --model (a preset or a saved folder)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    proc, url = start_server(args.model)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prompts = write_prompts(Path(tmp) / "prompts", args.prompts)
            bodies = bodies_for(prompts, args.k, args.max_tokens, args.model)
            asyncio.run(plain_loop(url, bodies[: args.concurrency], args.concurrency))  # warm the server
            loop_s = asyncio.run(plain_loop(url, bodies, args.concurrency))
            sets = {"engine.name": "local", "engine.workers": 1, "reader.batch_size": args.concurrency,
                    "stages.0.max_tokens": args.max_tokens, "stages.0.teacher.concurrency": args.concurrency}
            start = time.perf_counter()
            report = distill.run(str(prompts), str(Path(tmp) / "out"), teacher=url, model=args.model, k=args.k,
                                 overrides=sets)
            flow_s = time.perf_counter() - start
            loop_s2 = asyncio.run(plain_loop(url, bodies, args.concurrency))
    finally:
        proc.terminate()
        proc.wait(30)
    loop_s = min(loop_s, loop_s2)
    n = args.prompts
    print(f"{n} prompts x k={args.k}, max_tokens {args.max_tokens}, concurrency {args.concurrency}, model {args.model}")
    print(f"plain HTTP loop : {n / loop_s:8.2f} requests/s ({loop_s:.1f} s, best of two)")
    print(f"distill flow    : {n / flow_s:8.2f} requests/s ({flow_s:.1f} s, local engine incl. start, checks, "
          f"verifiers, shards, ledger, RL set; {report['rl_prompts']} RL prompts)")
    print(f"ratio flow / loop: {loop_s / flow_s:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
