"""`vlmdata export`: a distillation run (scripted loopback teacher) exported for LLaMA-Factory and verl, read back
with json/pandas/pyarrow and checked against the fields those tools document."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from orchestration.cli import app
from synth import distill
from tests.synth.test_distill import SCRIPT, scripted_teacher


@pytest.fixture(scope="module")
def run_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export-src") / "out"
    with scripted_teacher() as url:
        distill.run(str(distill.DEMO_PROMPTS), str(out), teacher=url, k=2,
                    overrides={"engine.name": "local", "engine.workers": 0})
    return out


def test_llamafactory_sharegpt_json_and_dataset_info(run_out, tmp_path):
    dest = tmp_path / "lf"
    result = CliRunner().invoke(app, ["export", str(run_out), "--format", "llamafactory", "--output", str(dest),
                                      "--name", "cot"])
    assert result.exit_code == 0, result.output
    info = json.loads((dest / "dataset_info.json").read_text())
    entry = info["cot"]
    assert entry["file_name"] == "cot.json" and entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "messages", "images": "images"}
    assert entry["tags"]["role_tag"] == "role" and entry["tags"]["content_tag"] == "content"
    data = json.loads((dest / entry["file_name"]).read_text())
    assert len(data) == 4  # the kept SFT samples
    responses = {t for v in SCRIPT.values() for t in v}
    with_images = 0
    for rec in data:
        user, assistant = rec["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert assistant["content"] in responses
        # LLaMA-Factory: as many <image> placeholders as `images` entries, paths relative to the dataset dir
        assert user["content"].count("<image>") == len(rec.get("images", []))
        for rel in rec.get("images", []):
            assert not Path(rel).is_absolute()
            with Image.open(dest / rel) as im:
                assert im.size == (160, 120)
            with_images += 1
    assert with_images == 3  # two squares samples + the description; the sum has no image
    again = CliRunner().invoke(app, ["export", str(run_out), "--format", "llamafactory", "--output", str(dest),
                                     "--name", "cot"])
    assert again.exit_code == 0  # a previous export is overwritten, nothing else


def test_verl_rlhf_parquet_layout(run_out, tmp_path):
    dest = tmp_path / "verl"
    result = CliRunner().invoke(app, ["export", str(run_out), "--format", "verl", "--output", str(dest)])
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(dest / "vlmdata.parquet")
    assert {"data_source", "prompt", "images", "ability", "reward_model", "extra_info"} <= set(df.columns)
    assert len(df) == 4 and set(df["ability"]) == {"counting", "math", "choice"}
    for _, row in df.iterrows():
        prompt = list(row["prompt"])
        assert prompt[0]["role"] == "user"
        # verl's RLHFDataset splits the content on <image>; each placeholder takes the next entry of `images`
        segments = [s for s in re.split("(<image>|<video>)", prompt[0]["content"]) if s]
        assert segments.count("<image>") == len(row["images"])
        for im in row["images"]:
            Image.open(io.BytesIO(im["bytes"])).verify()
        assert row["reward_model"]["style"] == "rule" and row["reward_model"]["ground_truth"]
    by_id = {r["extra_info"]["id"]: r for r in pq.read_table(dest / "vlmdata.parquet").to_pylist()}
    assert by_id["sum"]["reward_model"]["ground_truth"] == "42" and by_id["sum"]["extra_info"]["pass_at_k"] == 0.5
    assert by_id["count-squares"]["extra_info"]["difficulty"] == "very_easy"


def test_export_refuses_foreign_folders_and_missing_inputs(run_out, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    r = CliRunner().invoke(app, ["export", str(run_out), "--format", "verl", "--output", str(foreign)])
    assert r.exit_code == 2 and "did not write" in r.output and (foreign / "notes.txt").read_text() == "mine"
    r = CliRunner().invoke(app, ["export", str(tmp_path / "nothing"), "--format", "verl", "--output",
                                 str(tmp_path / "v")])
    assert r.exit_code == 2 and "rl_prompts.parquet" in r.output
    r = CliRunner().invoke(app, ["export", str(run_out), "--format", "alpaca", "--output", str(tmp_path / "a")])
    assert r.exit_code == 2 and "llamafactory or verl" in r.output
