"""Two ranks under torchrun (gloo on CPU): the tiny preset pretrains from a preset (FSDP2) with the loss curve of one
rank with the same global batch, checkpoints, and resumes on DDP from a saved model with the same losses."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from train.config import TrainConfig
from train.trainer import train

# torchrun's own rendezvous binds port 0 and the ranks join its store (TORCHELASTIC_USE_AGENT_STORE): no port is
# picked by the test, freed, and bound later (where another process could take it in between).
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr", "127.0.0.1",
            "--nproc_per_node", "2"]


def recipe(shards: Path, out: Path, **run) -> dict:
    return {
        "stage": "pretrain", "model": "tiny", "tokenizer_samples": 300,
        "data": {"sources": [{"name": "toy", "urls": str(shards / "*.tar")}], "seq_len": 384, "rows_per_batch": 2,
                 "open_shards": 2, "streams": 2},
        "optim": {"lr": 2e-3, "warmup_steps": 5},
        "run": {"output": str(out), "steps": 4, "ckpt_every": 2, "progress": False, "tensorboard": False,
                "cpu_threads": 1, **run},
    }


def torchrun(cfg: dict, tmp: Path, *flags: str) -> None:
    path = tmp / f"{Path(cfg['run']['output']).name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [*TORCHRUN, "-m", "train.cli", "pretrain", "-c", str(path), "--no-progress", *flags]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_ranks_match_one_rank_then_resume_on_ddp_from_a_saved_model(toy_shards, tmp_path):
    two = tmp_path / "two"
    torchrun(recipe(toy_shards, two), tmp_path)
    assert (two / "checkpoints" / "step-2" / "done").exists() and (two / "hf" / "config.json").exists()

    # one rank, same global batch: the two streams are read as two micro-batches
    one = tmp_path / "one"
    cfg = TrainConfig.model_validate(recipe(toy_shards, one, save_hf=False))
    cfg.optim.grad_accum = 2
    train(cfg)
    got, ref = metrics(two), metrics(one)
    assert [m["step"] for m in got] == [1, 2, 3, 4]
    for a, b in zip(got, ref, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * b["loss"], (a["loss"], b["loss"])
        assert a["samples"] == b["samples"] and a["loss_tokens"] == b["loss_tokens"]
    # the logged lr is the one the step used: warmup (step) / 5 of the peak
    assert [round(m["lr"], 8) for m in got] == [round(2e-3 * s / 5, 8) for s in (1, 2, 3, 4)]

    # resume from step 2 on DDP, the model given as a saved folder: the same losses as the uninterrupted run
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(two / "checkpoints" / "step-2", resumed / "checkpoints" / "step-2")
    torchrun({**recipe(toy_shards, resumed, fsdp=False, save_hf=False), "model": str(two / "hf")}, tmp_path)
    again = metrics(resumed)
    assert [m["step"] for m in again] == [3, 4]
    for a, b in zip(again, got[2:], strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * b["loss"], (a["loss"], b["loss"])
