"""Generated tokens per second through `vlmdata serve-model` (concurrent requests from the official openai client)
vs plain `model.generate` in process on the same prompts, same batch size and same greedy decoding; prints the
ratio (target >= 0.8). Both sides run the same seeded preset (or the same saved folder)."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import openai  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from transformers import GenerationConfig  # noqa: E402

from model.serve.engine import Engine  # noqa: E402
from model.serve.loading import load_model  # noqa: E402

WORDS = "how many red circles blue squares are on the left of the page what colour is the big star".split()


def make_prompts(count: int, with_images: bool) -> list[tuple[str, bytes | None]]:
    out = []
    for i in range(count):
        text = " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(6 + i % 9)) + "?"
        png = None
        if with_images:
            img = Image.new("RGB", (112, 84), (255, 255, 255))
            ImageDraw.Draw(img).ellipse([10 + i % 40, 10, 60 + i % 40, 70], fill=(200, 30 + 5 * i % 200, 40))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            png = buf.getvalue()
        out.append((text, png))
    return out


def hf_messages(text: str, png: bytes | None) -> list[dict]:
    parts = ([{"type": "image"}] if png else []) + [{"type": "text", "text": text}]
    return [{"role": "user", "content": parts}]


def in_process(engine: Engine, prompts: list[tuple[str, bytes | None]], batch: int, max_tokens: int) -> tuple[float, int, list[str]]:
    """Plain transformers: processor on each batch of prompts (left padding), one greedy generate per batch."""
    model, proc = engine.model, engine.processor
    config = GenerationConfig(max_new_tokens=max_tokens, do_sample=False, num_beams=1,
                              eos_token_id=sorted(engine.stop_token_ids), pad_token_id=engine.pad_token_id)
    tokens, texts = 0, []
    start = time.perf_counter()
    for b in range(0, len(prompts), batch):
        chunk = prompts[b:b + batch]
        text = [proc.apply_chat_template(hf_messages(t, p), add_generation_prompt=True, tokenize=False) for t, p in chunk]
        images = [Image.open(io.BytesIO(p)).convert("RGB") for _, p in chunk if p] or None
        inputs = proc(text=text, images=images, padding=True, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.generate(**inputs, generation_config=config)
        for row in out[:, inputs["input_ids"].shape[1]:].tolist():
            n = next((i for i, t in enumerate(row) if t in engine.stop_token_ids), len(row))
            tokens += n
            texts.append(engine.decode(row[:n]))
    return time.perf_counter() - start, tokens, texts


def through_server(url: str, name: str, prompts: list[tuple[str, bytes | None]], batch: int,
                   max_tokens: int) -> tuple[float, int, list[str]]:
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)

    def one(prompt: tuple[str, bytes | None]):
        text, png = prompt
        parts = ([{"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}}]
                 if png else []) + [{"type": "text", "text": text}]
        return client.chat.completions.create(model=name, messages=[{"role": "user", "content": parts}],
                                              max_tokens=max_tokens, temperature=0)

    start = time.perf_counter()
    with ThreadPoolExecutor(batch) as pool:
        answers = list(pool.map(one, prompts))
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed, sum(a.usage.completion_tokens for a in answers), [a.choices[0].message.content for a in answers]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    script = Path(sys.executable).parent / "vlmdata"
    proc = subprocess.Popen([str(script), "serve-model", "--model", args.model, "--port", "0", "--max-batch-rows",
                             str(args.batch)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("serving ") and " on http" in line:
            return proc, line.rsplit(" on ", 1)[1].strip()
    raise SystemExit(f"serve-model did not start (exit {proc.wait()})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="tiny", help="Preset or saved model folder (the same on both sides).")
    ap.add_argument("--requests", type=int, default=64, help="Prompts sent (and generated in process).")
    ap.add_argument("--batch", type=int, default=16, help="In-process batch = client concurrency = server max rows.")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--images", action="store_true", help="Every prompt carries a 112x84 PNG.")
    ap.add_argument("--rounds", type=int, default=3, help="Alternating timed rounds per side (median reported).")
    args = ap.parse_args()

    prompts = make_prompts(args.requests, args.images)
    engine = Engine(load_model(args.model))
    proc, url = start_server(args)
    try:
        in_process(engine, prompts[: args.batch], args.batch, 4)  # warm-up both sides
        through_server(url, args.model, prompts[: args.batch], args.batch, 4)
        base, served = [], []
        for _ in range(args.rounds):  # alternate, so machine load drifts hit both sides alike
            s, n, base_texts = in_process(engine, prompts, args.batch, args.max_tokens)
            base.append(n / s)
            s, n, served_texts = through_server(url, args.model, prompts, args.batch, args.max_tokens)
            served.append(n / s)
        health = json.loads(urllib.request.urlopen(url.removesuffix("/v1") + "/health").read())
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    same = sum(a == b for a, b in zip(base_texts, served_texts, strict=True))
    b, v = statistics.median(base), statistics.median(served)
    print(f"model {args.model}, {args.requests} prompts{' with images' if args.images else ''}, batch/concurrency "
          f"{args.batch}, max_tokens {args.max_tokens}, torch threads {torch.get_num_threads()}, "
          f"device {engine.device}")
    print(f"in-process generate: {b:8.1f} generated tokens/s  (rounds: {', '.join(f'{x:.1f}' for x in base)})")
    print(f"serve-model + openai: {v:8.1f} generated tokens/s  (rounds: {', '.join(f'{x:.1f}' for x in served)})")
    stats = health["batching"]
    print(f"server batches: {stats['batches']} for {stats['requests']} requests (warm-up included), "
          f"largest {stats['largest_batch_requests']}")
    print(f"same greedy text on both sides: {same}/{len(prompts)}")
    print(f"ratio server / in-process: {v / b:.2f}  (target >= 0.8)")


if __name__ == "__main__":
    main()
