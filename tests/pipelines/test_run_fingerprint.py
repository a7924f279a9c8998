import os

from pipelines.run import plan
from pipelines.spec import load_spec
from tests.images import jpeg_bytes


def test_the_run_fingerprint_follows_content_and_config_not_timestamps(tmp_path):
    for i in range(4):
        (tmp_path / f"{i}.jpg").write_bytes(jpeg_bytes(seed=i))
        (tmp_path / f"{i}.txt").write_text(f"caption {i}")
    spec = load_spec("configs/curate/base.yaml")
    _, first = plan(spec, [str(tmp_path)])
    os.utime(tmp_path / "2.jpg", (1, 1))  # only the timestamp changes
    assert plan(spec, [str(tmp_path)])[1] == first
    data = bytearray((tmp_path / "2.jpg").read_bytes())
    data[-10] ^= 0xFF  # same size, other content
    (tmp_path / "2.jpg").write_bytes(bytes(data))
    changed = plan(spec, [str(tmp_path)])[1]
    assert changed != first
    assert plan(load_spec("configs/curate/base.yaml", {"stages": [{"op": "decode"}]}), [str(tmp_path)])[1] != changed
    stat = load_spec("configs/curate/base.yaml", {"reader.fingerprint": "stat"})
    before = plan(stat, [str(tmp_path)])[1]
    (tmp_path / "2.jpg").write_bytes(bytes(data[:-1]) + b"\x00")
    assert plan(stat, [str(tmp_path)])[1] == before  # stat mode: same names and sizes, same fingerprint


def test_the_run_fingerprint_follows_the_operator_code(tmp_path, monkeypatch):
    import inspect

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "0.jpg").write_bytes(jpeg_bytes(seed=0))
    (tmp_path / "in" / "0.txt").write_text("caption")
    plugin = tmp_path / "plugin_op.py"
    plugin.write_text(inspect.cleandoc('''
        from pipelines.operator import Operator

        class Passthrough(Operator):
            name = "passthrough"

            def __call__(self, batch):
                return batch
    ''') + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = load_spec("configs/curate/base.yaml", {"stages": [{"op": "decode"}, {"op": "plugin_op:Passthrough"}]})
    _, first = plan(spec, [str(tmp_path / "in")])
    assert plan(spec, [str(tmp_path / "in")])[1] == first
    plugin.write_text(plugin.read_text() + "# a new release of the plug-in\n")
    assert plan(spec, [str(tmp_path / "in")])[1] != first
