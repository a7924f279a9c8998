"""Checkpoints with torch.distributed.checkpoint: model and optimizer (sharded), plus per-rank scheduler,
step, data position and RNG states, so a resumed run continues bit-for-bit."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from train.dist import DistInfo, barrier

STEP_DIR = re.compile(r"^step-(\d+)$")


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class Checkpointer:
    """Saves to OUTPUT/checkpoints/step-N (complete when its `done` marker exists) and restores the latest."""

    def __init__(self, root: Path, dist_info: DistInfo, keep: int = 2) -> None:
        self.root, self.dist, self.keep = Path(root), dist_info, keep

    def steps(self) -> list[int]:
        if not self.root.exists():
            return []
        return sorted(int(m.group(1)) for p in self.root.iterdir()
                      if (m := STEP_DIR.match(p.name)) and (p / "done").exists())

    def latest(self) -> int | None:
        s = self.steps()
        return s[-1] if s else None

    def save(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, extra: dict) -> Path:
        path = self.root / f"step-{step}"
        model_sd, optim_sd = get_state_dict(model, optimizer)
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(path / "dcp"))
        torch.save({**extra, "rng": rng_state()}, path / f"extra-rank{self.dist.rank}.pt")
        barrier()
        if self.dist.is_main:
            (path / "done").touch()
            for old in self.steps()[: -self.keep] if self.keep > 0 else []:
                shutil.rmtree(self.root / f"step-{old}", ignore_errors=True)
        barrier()
        return path

    def load(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        """Restores model and optimizer in place; returns the extra state (RNG already restored)."""
        path = self.root / f"step-{step}"
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        dcp.load(state, checkpoint_id=str(path / "dcp"))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        own = path / f"extra-rank{self.dist.rank}.pt"
        if own.exists():
            extra = torch.load(own, weights_only=False)
            set_rng_state(extra.pop("rng"))
        else:  # more ranks than saved this checkpoint: rank 0's schedule and step, fresh RNG streams
            extra = torch.load(path / "extra-rank0.pt", weights_only=False)
            extra.pop("rng")
        return extra

    def data_states(self, step: int) -> list[dict]:
        """The data state every rank saved at `step`, by rank (a resumed run may have another world size)."""
        path = self.root / f"step-{step}"
        files = sorted(path.glob("extra-rank*.pt"), key=lambda p: int(p.stem.removeprefix("extra-rank")))
        return [torch.load(f, weights_only=False)["data"] for f in files]
