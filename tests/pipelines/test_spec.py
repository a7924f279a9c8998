import pytest

from pipelines.spec import SpecError, load_spec


def test_demo_and_base_recipes_load_and_build_their_operators():
    spec = load_spec("configs/curate/demo.yaml")
    names = ["decode", "heuristics", "exact_dedup", "clip_score", "near_dedup", "concept_balance"]
    assert [op.name for op in spec.operators()] == names
    assert spec.operators()[1].config.min_side == 24
    base = load_spec("configs/curate/base.yaml")
    assert [op.name for op in base.operators()] == [n for n in names if n != "clip_score"]


def test_overrides_apply_by_dotted_path():
    spec = load_spec("configs/curate/demo.yaml", {"shards.max_samples": 7, "engine.master": "local[1]"})
    assert spec.shards.max_samples == 7 and spec.engine.master == "local[1]"


@pytest.mark.parametrize(
    "text, match",
    [
        ("stages: [ {op: decode", "not valid YAML"),
        ("- just a list", "top level must be a mapping"),
        ("stages:\n  - op: no_such_op\n", "unknown operator 'no_such_op'"),
        ("stages:\n  - op: heuristics\n    min_sid: 3\n", "min_sid"),
        ("shards:\n  max_samples: -1\n", "max_samples"),
        ("engine:\n  nme: spark\n", "nme"),
    ],
)
def test_bad_recipes_fail_with_the_file_and_the_field(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=match) as info:
        load_spec(path)
    assert "bad.yaml" in str(info.value)


def test_fingerprint_ignores_the_engine_but_not_the_stages():
    a = load_spec("configs/curate/demo.yaml")
    b = load_spec("configs/curate/demo.yaml", {"engine.master": "local[1]"})
    c = load_spec("configs/curate/demo.yaml", {"shards.max_samples": 9})
    assert a.fingerprint("p") == b.fingerprint("p") != c.fingerprint("p")
    assert a.fingerprint("p") != a.fingerprint("q")
