"""Two FSDP2 ranks under torchrun (gloo on CPU) build the model on the meta device and materialise only their own
shards: each rank's parameter storage is about half the model, no transient tensor is bigger than one module, and
the gathered weights equal what one process builds (a preset: seeded init; a saved model: its stored weights)."""

import json
import os
import subprocess
from pathlib import Path

import torch

from model.build import save
from tests.train.test_distributed import TORCHRUN
from train.config import DataConfig, RunConfig, ShardSource, TrainConfig
from train.dist import DistInfo
from train.parallelize import local_parameter_bytes
from train.setup_model import setup_model

SCRIPT = r'''
import json, sys
from pathlib import Path
import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from train.config import TrainConfig
from train.dist import init_distributed
from train import parallelize as par
from train.setup_model import prepare_model

dist_info = init_distributed()
largest = []
materialize = par.materialize
import train.setup_model as sm
sm.materialize = lambda *a, **k: largest.append(materialize(*a, **k)) or largest[-1]  # records what it returns
for name in sys.argv[1:]:
    cfg = TrainConfig.model_validate_json(Path(name).read_text())
    model, _, _ = prepare_model(cfg, dist_info)
    local = par.local_parameter_bytes(model)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    out = cfg.run.output
    if dist_info.is_main:
        torch.save({"params": full, "buffers": dict(model.named_buffers())}, out / "gathered.pt")
    (out / f"rank{dist_info.rank}.json").write_text(json.dumps({"local_bytes": local, "largest": largest[-1]}))
'''


def config(shards: Path, out: Path, model: str = "tiny") -> TrainConfig:
    return TrainConfig(stage="pretrain", model=model, tokenizer_samples=300,
                       data=DataConfig(sources=[ShardSource(name="toy", urls=str(shards / "*.tar"))]),
                       run=RunConfig(output=out, progress=False, tensorboard=False, cpu_threads=1))


def test_fsdp_ranks_hold_half_the_model_and_gather_the_one_process_weights(toy_shards, tmp_path):
    one = DistInfo(0, 1, 0, torch.device("cpu"))
    preset = config(toy_shards, tmp_path / "preset")
    ref, processor = setup_model(preset, one)  # builds and saves the run's tokenizer; the 2 ranks reuse it
    saved_dir = save(ref, processor, tmp_path / "saved")  # bf16, as exported
    saved = config(toy_shards, tmp_path / "from-saved", model=str(saved_dir))
    saved.run.output.mkdir()
    ref_saved, _ = setup_model(saved, one)

    names = []
    for cfg in (preset, saved):
        names.append(tmp_path / f"{cfg.run.output.name}.json")
        names[-1].write_text(cfg.model_dump_json())
    (tmp_path / "script.py").write_text(SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [*TORCHRUN, str(tmp_path / "script.py"), *map(str, names)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    full_bytes = local_parameter_bytes(ref)
    largest_param = max(p.numel() * p.element_size() for p in ref.parameters())
    for cfg, want in ((preset, ref), (saved, ref_saved)):
        out = cfg.run.output
        ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
        assert sum(r["local_bytes"] for r in ranks) == full_bytes  # the shards cover the model exactly once
        for r in ranks:
            assert 0.4 * full_bytes <= r["local_bytes"] <= 0.6 * full_bytes  # about 1/world each
            assert r["largest"] <= 2 * largest_param < 0.5 * full_bytes  # one module at a time, never the model
        got = torch.load(out / "gathered.pt")
        sd = want.state_dict()
        assert set(got["params"]) == {k for k, _ in want.named_parameters()}
        for k, v in got["params"].items():
            assert torch.equal(v, sd[k]), k
        for k, v in want.named_buffers():
            assert torch.equal(got["buffers"][k], v), k
