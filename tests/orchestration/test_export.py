"""`vlmdata export`: a distillation run (scripted loopback teacher) exported for LLaMA-Factory and verl, read back
with json/pandas/pyarrow and checked against the fields those tools document."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
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


# --- placeholders, the folder, failures: small runs written here --------------------------------------------------

def _png(colour: str, size: tuple[int, int] = (8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _user(*parts: object) -> dict:
    return {"role": "user", "content": [{"type": "image"} if p is None else {"type": "text", "text": p} for p in parts]}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def _sample(key: str, messages: list[dict], **images: bytes) -> dict:
    return {"__key__": key, "json": json.dumps({"messages": messages}).encode(),
            **{k.replace("_", "."): v for k, v in images.items()}}


def _shard_run(root: Path, *shards: list[dict]) -> Path:
    from pipelines.codec import TarWriter

    (root / "shards").mkdir(parents=True)
    for i, samples in enumerate(shards):
        with open(root / "shards" / f"{i:06d}.tar", "wb") as f, TarWriter(f) as w:
            for s in samples:
                w.write(s)
    return root


def _export(run: Path, fmt: str, dest: Path, *extra: str):
    return CliRunner().invoke(app, ["export", str(run), "--format", fmt, "-o", str(dest), *extra])


def _report(result) -> dict:
    return json.loads(result.output.splitlines()[0])


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


RED, BLUE, GREEN = _png("red"), _png("blue"), _png("green")
PAGE = "<p>Figure:</p> <image> and <image> stay text"  # an OCR page whose markup holds the tag twice


def _mixed_run(root: Path) -> Path:
    return _shard_run(root, [
        _sample("one", [_user(None, "How many squares?"), _assistant("3")], png=RED),
        _sample("two", [_user("Compare ", None, " with ", None), _assistant("the left")], **{"0_png": RED, "1_png": BLUE}),
        _sample("legacy", [{"role": "user", "content": "Describe it."}, {"role": "assistant", "content": "Red."}],
                jpg=GREEN),
        _sample("text", [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"}]),
        _sample("page", [_user(None, "Read the page."), _assistant(PAGE)], png=BLUE),
        _sample("tag", [{"role": "user", "content": "What does the literal tag <image> mean?"}, _assistant("A tag.")]),
        _sample("split", [_user(None, "a <ima", "ge> b"), _assistant("x")], png=RED),
        _sample("video", [_user(None, "Is <video> a tag?"), _assistant("Yes.")], png=RED),
        _sample("audio", [_user("Play <audio>"), _assistant("No.")]),
        _sample("missing", [_user(None, None, "Two?"), _assistant("x")], png=RED),
    ], [
        _sample("one", [_user(None, "Again?"), _assistant("4")], png=GREEN),  # the same key in another shard
    ])


def test_llamafactory_placeholders_match_images_per_sample(tmp_path):
    dest = tmp_path / "lf"
    result = _export(_mixed_run(tmp_path / "run"), "llamafactory", dest)
    assert result.exit_code == 0, result.output
    report = _report(result)
    assert report["skipped"] == {"literal_image_token": 3, "literal_video_token": 1, "literal_audio_token": 1,
                                 "image_count": 1}
    assert report["skipped_examples"]["literal_image_token"] == ["page", "tag", "split"]
    assert "warning:" in result.output and "literal_image_token: 3" in result.output
    data = json.loads((dest / "vlmdata.json").read_text())
    assert report["samples"] == len(data) == 5 and report["images"] == 5
    for rec in data:  # what LLaMA-Factory's mm_plugin checks, sample by sample
        texts = [m["content"] for m in rec["messages"]]
        assert sum(t.count("<image>") for t in texts) == len(rec.get("images", []))
        assert sum(t.count("<video>") + t.count("<audio>") for t in texts) == 0
    by_text = {rec["messages"][0]["content"]: rec for rec in data}
    assert set(by_text) == {"<image>How many squares?", "Compare <image> with <image>", "<image>Describe it.",
                            "What is 2 + 3?", "<image>Again?"}
    two = by_text["Compare <image> with <image>"]["images"]  # in the order of the image parts
    assert [(dest / p).read_bytes() for p in two] == [RED, BLUE]
    assert (dest / by_text["<image>Describe it."]["images"][0]).read_bytes() == GREEN
    first, again = by_text["<image>How many squares?"]["images"], by_text["<image>Again?"]["images"]
    assert first != again and (dest / first[0]).read_bytes() == RED and (dest / again[0]).read_bytes() == GREEN
    assert "images" not in by_text["What is 2 + 3?"]
    assert _files(dest / "images") == {p.split("/", 1)[1] for rec in data for p in rec.get("images", [])}


def test_llamafactory_self_check_refuses_a_mismatch_and_writes_nothing(tmp_path, monkeypatch):
    from orchestration import export as ex

    run = _shard_run(tmp_path / "run", [_sample("one", [_user(None, "Hi"), _assistant("x")], png=RED)])
    real = ex._turns
    monkeypatch.setattr(ex, "_turns", lambda m, n: [{**t, "content": t["content"] + "<image>"} for t in real(m, n)])
    with pytest.raises(ex.PlaceholderMismatch):
        ex.export_llamafactory(run, tmp_path / "lf", "vlmdata")
    assert not (tmp_path / "lf").exists()
    with pytest.raises(ex.PlaceholderMismatch):
        ex.check_placeholders(["<image>a", "<video>"], 1, ex.LLAMAFACTORY_TOKENS, "k")
    ex.check_placeholders(["<image>a", "b<image>"], 2, ex.LLAMAFACTORY_TOKENS, "k")


def _rl_run(root: Path, rows: list[dict]) -> Path:
    from synth.distill.rlset import RL_FILE, RL_SCHEMA

    root.mkdir(parents=True)
    full = [{"key": r["id"], "answer": "2", "domain": "counting", "k": 2, "passed": 1, "pass_at_k": 0.5,
             "difficulty": "medium", "source": "p.jsonl#row=0", "dataset": "demo", **r} for r in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=RL_SCHEMA), root / RL_FILE)
    return root


def _im(data: bytes) -> dict:
    return {"bytes": data, "path": "x.png"}


def test_verl_placeholders_match_images_and_literals_are_skipped(tmp_path):
    run = _rl_run(tmp_path / "run", [
        {"id": "lit", "question": "What does the literal tag <image> mean?", "images": []},
        {"id": "cmp", "question": "Compare <image> with the other one.", "images": [_im(RED), _im(BLUE)]},
        {"id": "vid", "question": "Is <video> a tag?", "images": [_im(RED)]},
        {"id": "two", "question": "How many squares in both?", "images": [_im(RED), _im(BLUE)]},
        {"id": "none", "question": "What is 1 + 1?", "images": []},
        {"id": "aud", "question": "Is <audio> a tag?", "images": []},  # verl reads only <image>|<video>
    ])
    result = _export(run, "verl", tmp_path / "verl")
    assert result.exit_code == 0, result.output
    report = _report(result)
    assert report["prompts"] == 3
    assert report["skipped"] == {"literal_image_token": 2, "literal_video_token": 1}
    assert report["skipped_examples"] == {"literal_image_token": ["lit", "cmp"], "literal_video_token": ["vid"]}
    rows = {r["extra_info"]["id"]: r for r in pq.read_table(tmp_path / "verl" / "vlmdata.parquet").to_pylist()}
    assert set(rows) == {"two", "none", "aud"}
    for r in rows.values():  # what verl's RLHFDataset does: each <image> segment takes the next image
        segments = [s for s in re.split("(<image>|<video>)", r["prompt"][0]["content"]) if s]
        assert segments.count("<image>") == len(r["images"]) and "<video>" not in segments
    assert rows["two"]["prompt"][0]["content"] == "<image><image>How many squares in both?"
    assert [im["bytes"] for im in rows["two"]["images"]] == [RED, BLUE]
    assert rows["aud"]["prompt"][0]["content"] == "Is <audio> a tag?"
    assert [r["extra_info"]["index"] for r in rows.values()] == [0, 1, 2]


def test_verl_rows_carry_what_a_custom_reward_function_needs(tmp_path):
    """verl calls compute_score(data_source, solution_str, ground_truth, extra_info): the domain is in extra_info,
    so the README's wrapper around train.rewards.score scores a response."""
    from train.rewards import score

    run = _rl_run(tmp_path / "run", [{"id": "two", "question": "How many squares?", "images": [_im(RED)]}])
    assert _export(run, "verl", tmp_path / "verl").exit_code == 0
    (row,) = pq.read_table(tmp_path / "verl" / "vlmdata.parquet").to_pylist()
    assert row["data_source"] == "vlmdata/demo" and row["ability"] == row["extra_info"]["domain"] == "counting"
    right = "<think>1, 2.</think><answer>There are <|begin_of_box|>2<|end_of_box|></answer>"
    wrong = right.replace(">2<", ">3<")
    truth, info = row["reward_model"]["ground_truth"], row["extra_info"]
    assert score(info["domain"], right, truth).score == 1.0 and score(info["domain"], wrong, truth).score == 0.0
    # what verl calls, as it calls it (a warm pool with a timeout behind it)
    from train.rewards.verl import compute_score

    assert compute_score(row["data_source"], right, truth, info) == 1.0
    assert compute_score(row["data_source"], wrong, truth, info) == 0.0
    with pytest.raises(ValueError, match="extra_info"):
        compute_score(row["data_source"], right, truth, {})


def test_failed_export_creates_nothing(tmp_path):
    dest = tmp_path / "new" / "lf"
    for fmt in ("llamafactory", "verl"):
        r = _export(tmp_path / "nonexistent", fmt, dest)
        assert r.exit_code == 2 and "not a folder" in r.output
        assert not (tmp_path / "new").exists()
    (tmp_path / "run").mkdir()  # a folder without shards / rl_prompts.parquet
    for fmt, needs in (("llamafactory", "no .tar shards"), ("verl", "rl_prompts.parquet")):
        r = _export(tmp_path / "run", fmt, dest)
        assert r.exit_code == 2 and needs in r.output and not (tmp_path / "new").exists()
    r = _export(tmp_path / "run", "alpaca", dest)
    assert r.exit_code == 2 and not (tmp_path / "new").exists()


def test_export_with_no_usable_sample_fails_and_writes_nothing(tmp_path):
    run = _shard_run(tmp_path / "run", [
        _sample("tag", [{"role": "user", "content": "What does <image> mean?"}, _assistant("A tag.")]),
        _sample("page", [_user(None, "Read."), _assistant(PAGE)], png=RED),
    ])
    r = _export(run, "llamafactory", tmp_path / "new" / "lf")
    assert r.exit_code == 1, r.output
    assert "no sample could be exported" in r.output and "literal_image_token: 2 (e.g. tag, page)" in r.output
    assert not (tmp_path / "new").exists()
    rl = _rl_run(tmp_path / "rl", [{"id": "lit", "question": "Is <image> a tag?", "images": []}])
    r = _export(rl, "verl", tmp_path / "v")
    assert r.exit_code == 1 and "literal_image_token: 1 (e.g. lit)" in r.output and not (tmp_path / "v").exists()
    # into a previous export: that export stays as it was
    good = _shard_run(tmp_path / "good", [_sample("one", [_user(None, "Hi"), _assistant("x")], png=RED)])
    dest = tmp_path / "lf"
    assert _export(good, "llamafactory", dest).exit_code == 0
    before = {f: (dest / f).read_bytes() for f in _files(dest)}
    assert _export(run, "llamafactory", dest).exit_code == 1
    assert {f: (dest / f).read_bytes() for f in _files(dest)} == before


def test_reexport_leaves_exactly_the_new_files(tmp_path):
    big = _shard_run(tmp_path / "big", [_sample(f"s{i}", [_user(None, "Hi"), _assistant("x")], png=RED)
                                        for i in range(12)])
    small = _shard_run(tmp_path / "small", [_sample("only", [_user(None, "Hi"), _assistant("y")], png=BLUE)])
    dest = tmp_path / "lf"
    assert _export(big, "llamafactory", dest, "--name", "big").exit_code == 0
    assert len(list((dest / "images").iterdir())) == 12
    (dest / "notes.txt").write_text("mine")  # not the export's: kept
    r = _export(small, "llamafactory", dest, "--name", "small")
    assert r.exit_code == 0, r.output
    assert _report(r)["removed_previous"] == 13  # big.json and the 12 images; dataset_info.json is rewritten
    new = {"small.json", "dataset_info.json", "images/only.png"}
    assert _files(dest) == new | {".vlmdata-export", "notes.txt"}
    assert set(json.loads((dest / "dataset_info.json").read_text())) == {"small"}
    assert sorted(json.loads((dest / ".vlmdata-export").read_text())["files"]) == sorted(new)
    # another format into the same folder: the LLaMA-Factory files go, images/ with them
    rl = _rl_run(tmp_path / "rl", [{"id": "a", "question": "Count.", "images": [_im(RED)]}])
    assert _export(rl, "verl", dest).exit_code == 0
    assert _files(dest) == {"vlmdata.parquet", ".vlmdata-export", "notes.txt"} and not (dest / "images").exists()
    # a killed export's staging folder is cleared by the next one
    (dest / ".vlmdata-export.partial").mkdir()
    (dest / ".vlmdata-export.partial" / "junk.png").write_bytes(RED)
    assert _export(small, "llamafactory", dest).exit_code == 0
    assert _files(dest) == {"vlmdata.json", "dataset_info.json", "images/only.png", ".vlmdata-export", "notes.txt"}


def test_reexport_refuses_unrecorded_or_outside_files(tmp_path):
    run = _shard_run(tmp_path / "run", [_sample("one", [_user(None, "Hi"), _assistant("x")], png=RED)])
    dest = tmp_path / "lf"
    assert _export(run, "llamafactory", dest, "--name", "a").exit_code == 0
    (dest / "b.json").write_text("the user's")  # the next export's file name, not written by an export
    r = _export(run, "llamafactory", dest, "--name", "b")
    assert r.exit_code == 2 and "no previous export wrote it" in r.output
    assert (dest / "b.json").read_text() == "the user's" and (dest / "a.json").is_file()
    assert not (dest / ".vlmdata-export.partial").exists()
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    (dest / ".vlmdata-export").write_text(json.dumps({"files": ["a.json", "../outside.txt"]}))
    r = _export(run, "llamafactory", dest, "--name", "a")
    assert r.exit_code == 2 and "not a file of the folder" in r.output and outside.read_text() == "keep"
    (dest / ".vlmdata-export").write_text("This folder is a vlmdata export.\n")  # an older vlmdata's marker
    r = _export(run, "llamafactory", dest, "--name", "a")
    assert r.exit_code == 2 and "does not list its files" in r.output and (dest / "a.json").is_file()


def test_dest_and_run_must_not_nest(tmp_path):
    run = _shard_run(tmp_path / "run", [_sample("one", [_user(None, "Hi"), _assistant("x")], png=RED)])
    for dest in (run / "shards" / "exp", run, run / "exp"):
        r = _export(run, "llamafactory", dest)
        assert r.exit_code == 2 and "inside the run folder" in r.output, r.output
    assert not (run / "shards" / "exp").exists() and not (run / "exp").exists()
    assert sorted(p.name for p in run.rglob("*")) == ["000000.tar", "shards"]
    r = _export(run, "llamafactory", tmp_path)
    assert r.exit_code == 2 and "is inside --output" in r.output
    r = _export(Path(str(run) + "/shards/.."), "llamafactory", run / "x")  # the same folder spelled otherwise
    assert r.exit_code == 2 and not (run / "x").exists()
