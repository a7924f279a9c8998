"""Generating stages: lineage, deterministic keys, failure isolation, plug-in sources, and the local engine."""

from __future__ import annotations

import io
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.engines.local import LocalEngine
from pipelines.operator import apply_map
from pipelines.plan import PlanError, check_columns
from pipelines.run import run_pipeline
from pipelines.schema import child_key, make_key, record_schema
from pipelines.spec import PipelineSpec, SpecError, load_spec
from tests.ops import FanOut


def _batch(texts: list[str]) -> pa.RecordBatch:
    rows = [{"key": make_key("d", str(i)), "text": t, "source": f"s{i}", "dataset": "d", "meta": "{}", "part": 0, "ord": i,
             "keep": True, "error": False} for i, t in enumerate(texts)]
    return pa.RecordBatch.from_pylist(rows, schema=record_schema())


def test_generator_children_carry_parent_and_deterministic_keys():
    op = FanOut()
    schema = record_schema(op.adds)
    texts = [f"caption {i}" for i in range(12)]
    out = apply_map(op, _batch(texts), schema).to_pylist()
    again = apply_map(FanOut(), _batch(texts), schema).to_pylist()
    assert out == again  # reruns agree
    parents = [r for r in out if r["parent"] is None]
    children = [r for r in out if r["parent"] is not None]
    assert len(parents) == 12
    for p in parents:
        kids = [c for c in children if c["parent"] == p["key"]]
        assert not p["keep"] and p["stage"] == "fan_out"
        if kids:
            assert p["reason"] == f"expanded:{len(kids)}"
            assert [c["key"] for c in kids] == [child_key(p["key"], "fan_out", i) for i in range(len(kids))]
            assert all(c["origin"] == "fan_out" and c["source"] == p["source"] for c in kids)
        else:
            assert p["reason"] == "nothing_to_expand"
    sizes = {len([c for c in children if c["parent"] == p["key"]]) for p in parents}
    assert sizes == {0, 1, 3}
    # A child that failed its check is recorded as dropped by the generator, without its image.
    failed = [c for c in children if c["reason"] == "failed_check:0"]
    assert failed and all(not c["keep"] and c["stage"] == "fan_out" for c in failed)
    # Every parent is followed directly by its children.
    order = [r["parent"] or r["key"] for r in out]
    assert order == sorted(order, key=lambda k: [p["key"] for p in parents].index(k))


def test_a_parent_whose_generation_raises_is_one_error_row_and_its_siblings_go_on():
    op = FanOut()
    texts = ["fine a", "poison here", "fine b", "fine c"]
    out = apply_map(op, _batch(texts), record_schema(op.adds)).to_pylist()
    errors = [r for r in out if r["error"]]
    assert len(errors) == 1 and errors[0]["text"] == "poison here"
    assert errors[0]["reason"].startswith("fan_out_failed:ValueError") and errors[0]["stage"] == "fan_out"
    others = [r for r in out if r["parent"] is None and not r["error"]]
    assert len(others) == 3


def test_a_stage_reading_a_column_nobody_provides_fails_at_load(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - op: heuristics\n")
    with pytest.raises(SpecError, match=r"stage 1 \(heuristics\) reads column\(s\) width, height, color_std"):
        load_spec(recipe)
    check_columns([FanOut()], [])  # `text` is a base column: fine
    with pytest.raises(PlanError, match="answer"):
        check_columns([_ReadsAnswer()], [])
    check_columns([_ReadsAnswer()], [pa.field("answer", pa.string())])  # the prompts source provides it


class _ReadsAnswer(FanOut):
    reads = ("text", "answer")


def _images(folder, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        img = Image.new("RGB", (rng.randint(40, 90), rng.randint(40, 90)), tuple(rng.randrange(256) for _ in range(3)))
        for _ in range(6):
            x, y = rng.randrange(img.width), rng.randrange(img.height)
            img.putpixel((x, y), tuple(rng.randrange(256) for _ in range(3)))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        (folder / f"img{i:03d}.png").write_bytes(buf.getvalue())
        word = "poison" if i == 7 else rng.choice(["cat", "dog", "tree", "boat"])
        (folder / f"img{i:03d}.txt").write_text(f"a {word} number {i}")
    (folder / "img005.png").write_bytes((folder / "img004.png").read_bytes())  # an exact duplicate


GEN_RECIPE = {
    "reader": {"part_size": 7, "batch_size": 4},
    "stages": [{"op": "decode"}, {"op": "tests.ops:FanOut"}, {"op": "exact_dedup"}],
    "shards": {"max_samples": 9},
}


def _ledger(out) -> list[dict]:
    return sorted(pq.read_table(out / "ledger.parquet").to_pylist(), key=lambda r: r["key"])


def test_local_engine_runs_a_generating_recipe_with_lineage_and_books_that_balance(tmp_path):
    _images(tmp_path / "in", 24)
    spec = PipelineSpec.model_validate({**GEN_RECIPE, "engine": {"name": "local", "workers": 2}})
    report = run_pipeline(spec, [str(tmp_path / "in")], str(tmp_path / "out"), LocalEngine(spec.engine))
    ledger = _ledger(tmp_path / "out")
    sources = [r for r in ledger if r["parent"] is None]
    children = [r for r in ledger if r["parent"] is not None]
    assert len(sources) == 24 == report.stats["inputs"]
    assert len({r["key"] for r in ledger}) == len(ledger)  # keys are unique
    assert {r["origin"] for r in children} == {"fan_out"}
    stage = {s["stage"]: s for s in report.stats["stages"]}
    fan = stage["fan_out"]
    assert fan["generated"] == len(children) == sum(fan["children"].values())
    assert fan["children"] == {s: sum(1 for r in children if r["status"] == s) for s in ("kept", "dropped", "error")}
    assert stage["decode"]["rows_in"] == 24 and stage["exact_dedup"]["rows_in"] == fan["rows_out"]
    assert stage["exact_dedup"]["rows_out"] == report.stats["status"]["kept"]
    poisoned = [r for r in ledger if r["status"] == "error"]
    assert len(poisoned) == 1 and poisoned[0]["source"].endswith("img007.png")
    assert poisoned[0]["reason"].startswith("fan_out_failed:ValueError") and poisoned[0]["stage"] == "fan_out"
    # Children of the duplicated image are duplicates of the original's children: the dedup sees generated rows.
    assert any((r["reason"] or "").startswith("exact_duplicate:") and r["parent"] for r in ledger)
    # Each kept child is a sample whose .json names its parent.
    index = json.loads((tmp_path / "out" / "shards" / "index.json").read_text())
    assert sum(s["nsamples"] for s in index["shardlist"]) == report.stats["status"]["kept"]


def test_count_source_and_a_plugin_source(tmp_path):
    spec = PipelineSpec.model_validate({"engine": {"name": "local", "workers": 0},
                                        "stages": [{"op": "tests.ops:FanOut"}]})
    run_pipeline(spec, ["count:10"], str(tmp_path / "seeds"), LocalEngine(spec.engine))
    ledger = _ledger(tmp_path / "seeds")
    seeds = [r for r in ledger if r["parent"] is None]
    assert len(seeds) == 10 and all(r["source"].startswith("count:10#seed=") for r in seeds)
    plug = PipelineSpec.model_validate({"engine": {"name": "local", "workers": 0},
                                        "reader": {"format": "tests.ops:CountedSource"}})
    run_pipeline(plug, ["counted:5"], str(tmp_path / "plug"), LocalEngine(plug.engine))
    rows = _ledger(tmp_path / "plug")
    assert [r["status"] for r in rows] == ["kept"] * 5
    assert all(r["source"].startswith("counted:5#") for r in rows)


def test_lineage_prints_the_chain_from_input_to_a_generated_sample(tmp_path):
    from typer.testing import CliRunner

    from orchestration.cli import app

    spec = PipelineSpec.model_validate({"engine": {"name": "local", "workers": 0},
                                        "stages": [{"op": "tests.ops:FanOut"}, {"op": "tests.ops:FanOut"}]})
    run_pipeline(spec, ["count:12"], str(tmp_path / "out"), LocalEngine(spec.engine))
    ledger = _ledger(tmp_path / "out")
    by_key = {r["key"]: r for r in ledger}
    grandchild = next(r for r in ledger if r["parent"] and by_key[r["parent"]]["parent"] and r["status"] == "kept")
    result = CliRunner().invoke(app, ["lineage", str(tmp_path / "out"), grandchild["key"]], terminal_width=250)
    assert result.exit_code == 0, result.output
    child = by_key[grandchild["parent"]]
    seed = by_key[child["parent"]]
    body = result.output.split("\n", 1)[1]  # below the title, which names the key asked for
    assert body.index(seed["key"]) < body.index(child["key"]) < body.index(grandchild["key"])
    assert "expanded" in body and "source" in body and "fan_out" in body
    missing = CliRunner().invoke(app, ["lineage", str(tmp_path / "out"), "nope"])
    assert missing.exit_code == 1 and "no row with key nope" in missing.output
