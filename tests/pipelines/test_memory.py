"""A process that runs passes keeps its freed heap (pipelines.memory): the next row reuses pages instead of
faulting in fresh ones. Each check runs in a fresh interpreter, so the test process keeps its own allocator."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest
from PIL import Image

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

_PROBE = """
import json, sys
import pyarrow as pa
def rss_mib():
    return int(open('/proc/self/statm').read().split()[1]) * 4096 >> 20
tuned = None
if sys.argv[1] == 'keep':
    from pipelines.memory import keep_heap
    tuned = [keep_heap(), keep_heap()]
blocks = [bytearray(b'x' * (8 << 20)) for _ in range(8)]  # 64 MiB in blocks below MMAP_BYTES, every page touched
peak = rss_mib()
del blocks
print(json.dumps({'tuned': tuned, 'pool': pa.default_memory_pool().backend_name, 'peak': peak, 'after': rss_mib()}))
"""


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def test_freed_heap_stays_with_the_process_and_arrow_allocates_from_it():
    plain, kept = _probe("plain"), _probe("keep")
    # the default allocator hands 64 MiB of freed blocks back to the kernel at once (the next rows fault them in again)
    assert plain["peak"] - plain["after"] >= 56
    assert kept["tuned"] == [True, True]  # applied once, and the second call says so too
    assert kept["peak"] - kept["after"] <= 8  # kept: the next batch reuses these pages
    assert plain["pool"] != "system" and kept["pool"] == "system"


def test_a_pass_runs_with_the_heap_kept(tmp_path):
    """Every engine's worker runs parts through PassRunner.run, which applies the settings before the first row."""
    code = """
import sys
from pipelines import memory
from pipelines.engines.local import LocalEngine
from pipelines.run import run_pipeline
from pipelines.spec import EngineConfig, PipelineSpec
spec = PipelineSpec.model_validate({'name': 't', 'stages': [{'op': 'decode'}]})
assert memory._tuned is None
report = run_pipeline(spec, [sys.argv[1]], sys.argv[2], LocalEngine(EngineConfig(name='local', workers=0)))
print(memory._tuned, report.stats['status']['kept'])
"""
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "a.txt").write_text("a caption")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "in"), str(tmp_path / "out")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["True", "1"]
