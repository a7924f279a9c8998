"""Inputs and outputs as fsspec URIs: file:// in and out, and a WebDataset tar read over HTTP from loopback."""

import functools
import http.server
import threading

import pyarrow.parquet as pq
import webdataset as wds

from pipelines import storage
from pipelines.engines.spark import SparkEngine
from pipelines.run import run_pipeline
from pipelines.spec import load_spec
from tests.images import jpeg_bytes


def _tar(path, n):
    with wds.TarWriter(str(path)) as sink:
        for i in range(n):
            sink.write({"__key__": f"{i:05d}", "jpg": jpeg_bytes((70, 50), seed=i), "txt": f"picture {i}"})


def test_storage_helpers_treat_paths_and_urls_alike(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.txt").write_text("hi")
    for i, root in enumerate((str(tmp_path), f"file://{tmp_path}")):
        assert storage.walk_files(storage.join(root, "a")) == [("b/x.txt", 2)]
        assert storage.read_bytes(storage.join(root, "a", "b", "x.txt")) == b"hi"
        assert storage.isdir(root) and storage.exists(storage.join(root, "a"))
        storage.write_atomic(storage.join(root, f"y{i}.bin"), b"data")
        assert storage.listdir(root)[: i + 2] == ["a", "y0.bin", "y1.bin"][: i + 2]


def test_curate_reads_http_and_file_urls_and_writes_a_file_url(spark, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    _tar(served / "remote.tar", 7)
    local = tmp_path / "local"
    local.mkdir()
    for i in range(5):
        (local / f"{i}.jpg").write_bytes(jpeg_bytes((70, 50), seed=100 + i))
        (local / f"{i}.txt").write_text(f"local picture {i}")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/remote.tar"
        spec = load_spec("configs/curate/base.yaml")
        out = f"file://{tmp_path}/out"
        report = run_pipeline(spec, [url, f"file://{local}"], out, SparkEngine(spec.engine, spark))
    finally:
        server.shutdown()
    assert report.stats["status"] == {"kept": 12, "dropped": 0, "error": 0}
    ledger = pq.read_table(tmp_path / "out" / "ledger.parquet").to_pylist()
    sources = sorted(r["source"] for r in ledger)
    assert sum(s.startswith(url + "::") for s in sources) == 7
    assert sum(s.startswith(f"file://{local}/") for s in sources) == 5
    samples = list(wds.WebDataset(sorted(str(p) for p in (tmp_path / "out" / "shards").glob("*.tar")), shardshuffle=False))
    assert len(samples) == 12
