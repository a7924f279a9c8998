"""The Beam engine's embedded worker pool: started once per engine, reused by every pass and reduce, revived when a
worker dies, and its pipelines give the local engine's bytes."""

import os
import signal

import pyarrow.parquet as pq
import pytest

from pipelines.engines.beam import BeamEngine, WorkerDied
from pipelines.engines.local import LocalEngine
from pipelines.run import run_pipeline
from pipelines.spec import PipelineSpec
from tests.pipelines.test_generators import GEN_RECIPE, _images


def _tree(root) -> dict[str, bytes]:
    return {name: (root / "shards" / name).read_bytes() for name in sorted(os.listdir(root / "shards"))}


def _running(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _beam_spec_with(stage: dict, **engine) -> PipelineSpec:
    """The generating recipe on the Beam engine with `stage` right after decode."""
    stages = [GEN_RECIPE["stages"][0], stage, *GEN_RECIPE["stages"][1:]]
    return PipelineSpec.model_validate({**GEN_RECIPE, "stages": stages, "engine": {"name": "beam", **engine}})


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A generating recipe (a pass, a dedup reduce, a pass) on 30 images, and the local engine's output for it."""
    root = tmp_path_factory.mktemp("beam-pool")
    _images(root / "in", 30, seed=11)
    spec = PipelineSpec.model_validate({**GEN_RECIPE, "engine": {"name": "local"}})
    run_pipeline(spec, [str(root / "in")], str(root / "local"), LocalEngine(spec.engine))
    return root, pq.read_table(root / "local" / "ledger.parquet"), _tree(root / "local")


def test_one_pool_runs_every_pass_and_reduce_of_several_runs_and_gives_the_local_bytes(generated):
    root, ledger, files = generated
    # the reduce on Beam too, not in the driver (30 images are far under engine.driver_reduce_rows)
    spec = PipelineSpec.model_validate({**GEN_RECIPE, "engine": {"name": "beam", "driver_reduce_rows": 0, "driver_compare_rows": 0}})
    engine = BeamEngine(spec.engine)
    assert engine.pool_pids() == []
    pids = []
    for name in ("beam-a", "beam-b"):  # 3 pipelines each (pass, reduce, pass): all on the same processes
        run_pipeline(spec, [str(root / "in")], str(root / name), engine, close=False)
        pids.append(engine.pool_pids())
        assert pq.read_table(root / name / "ledger.parquet").equals(ledger)
        assert _tree(root / name) == files
    assert pids[0] == pids[1] and len(pids[0]) == engine.workers
    assert all(pid != os.getpid() and _running(pid) for pid in pids[0])
    engine.close()
    assert engine.pool_pids() == [] and not any(_running(pid) for pid in pids[0])


def test_a_failed_pipeline_and_a_killed_worker_leave_the_pool_usable(generated, tmp_path):
    root, ledger, files = generated
    flag = tmp_path / "failed-once"
    spec = _beam_spec_with({"op": "tests.ops:FailSetupOnce", "flag": str(flag)})
    engine = BeamEngine(spec.engine)
    try:
        with pytest.raises(Exception, match="setup failed on purpose"):
            run_pipeline(spec, [str(root / "in")], str(tmp_path / "out"), engine, close=False)
        before = engine.pool_pids()
        assert flag.exists() and all(_running(pid) for pid in before)
        os.kill(before[0], signal.SIGKILL)  # an OOM kill between pipelines: the next one gets a fresh process
        report = run_pipeline(spec, [str(root / "in")], str(tmp_path / "out"), engine, close=False)
        after = engine.pool_pids()
        assert after[0] != before[0] and after[1:] == before[1:]
        assert report.stats["engine"] == "beam"
        # The extra pass-through stage changes no row: the resumed run's shards are the local engine's.
        assert _tree(tmp_path / "out") == files
        got = pq.read_table(tmp_path / "out" / "ledger.parquet")
        assert got.num_rows == ledger.num_rows
        assert got.column("status").to_pylist() == ledger.column("status").to_pylist()
    finally:
        engine.close()


def _chatty(x: int) -> int:
    print("x" * 200_000)  # an operator that prints: more than a pipe holds, and nobody reads the workers' stdout
    return x * 2


def test_a_worker_that_prints_a_lot_does_not_block_its_pipeline(tmp_path):
    import apache_beam as beam

    engine = BeamEngine(PipelineSpec.model_validate({"engine": {"name": "beam"}}).engine)
    out = tmp_path / "doubled"
    try:
        with engine._pipeline() as pipeline:
            (pipeline | beam.Create(list(range(6)), reshuffle=True) | beam.Map(_chatty)
             | beam.combiners.ToList() | beam.Map(lambda xs: out.write_text(",".join(map(str, sorted(xs))))))
        assert out.read_text() == "0,2,4,6,8,10"
    finally:
        engine.close()


def _listening() -> set[tuple[str, int]]:
    """(address, port) of every TCP socket this process listens on, from /proc (no psutil here)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                local, state, inode = cols[1], cols[3], cols[9]
                if state == "0A" and inode in inodes:  # LISTEN
                    addr, port = local.split(":")
                    out.add((addr if len(addr) == width else "?", int(port, 16)))
    return out


LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::1, ::ffff:127.0.0.1


def test_the_runner_servers_listen_on_loopback_only(generated, tmp_path):
    """Beam's runner starts control, data, state and logging servers per pipeline on `[::]:0` (every interface);
    the engine binds them on loopback. Watched from this process while a pass runs."""
    import threading

    root, _, _ = generated
    seen: set[tuple[str, int]] = set()
    before = _listening()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.update(_listening())
            stop.wait(0.005)

    spec = PipelineSpec.model_validate({**GEN_RECIPE, "engine": {"name": "beam"}})
    engine = BeamEngine(spec.engine)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run_pipeline(spec, [str(root / "in")], str(tmp_path / "out"), engine)
    finally:
        stop.set()
        watcher.join()
    opened = seen - before
    assert len(opened) >= 4, opened  # the runner's servers were seen (the check can fail)
    assert {addr for addr, _ in opened} <= LOOPBACK, opened


def _within(seconds: float, fn):
    """fn() in a thread: its result or exception, or a failure if it runs longer (a hung runner must not hang CI)."""
    import threading

    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: the runner hangs"
    return box


def test_a_worker_killed_mid_pass_fails_the_pipeline_which_runs_again_on_the_revived_pool(generated, tmp_path):
    root, ledger, files = generated
    flag = tmp_path / "killed-once"
    spec = _beam_spec_with({"op": "tests.ops:KillWorkerOnce", "flag": str(flag)})
    engine = BeamEngine(spec.engine)
    try:
        box = _within(240, lambda: run_pipeline(spec, [str(root / "in")], str(tmp_path / "out"), engine, close=False))
        assert "error" not in box, box.get("error")
        assert flag.exists()  # a worker did die
        assert _tree(tmp_path / "out") == files  # the pass-through stage changes no row
        assert pq.read_table(tmp_path / "out" / "ledger.parquet").column("status").to_pylist() == \
            ledger.column("status").to_pylist()
    finally:
        engine.close()


def test_a_row_that_kills_every_attempt_fails_the_run_with_a_clear_error(generated, tmp_path):
    root, _, _ = generated
    spec = _beam_spec_with({"op": "tests.ops:KillWorker"}, task_retries=1)
    engine = BeamEngine(spec.engine)
    try:
        box = _within(240, lambda: run_pipeline(spec, [str(root / "in")], str(tmp_path / "out"), engine, close=False))
        assert isinstance(box.get("error"), WorkerDied), box
        assert "worker process died" in str(box["error"])
    finally:
        engine.close()


def test_no_server_shares_a_port_and_workers_are_handed_the_address_servers_listen_on(generated, tmp_path, monkeypatch):
    """gRPC listens with SO_REUSEPORT by default: a second server could bind a port the pool already held, and the
    kernel would hand the runner's StartWorker to either ("Method not found!", seen once in CI). Every server of the
    engine refuses a port that is taken; every address a worker is handed is 127.0.0.1, where the servers listen."""
    from concurrent import futures

    import grpc
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    from pipelines.engines.beam import WorkerPool

    handed: list[str] = []
    start = WorkerPool.StartWorker

    def record(self, request, context):
        handed.extend([request.control_endpoint.url, request.logging_endpoint.url])
        return start(self, request, context)

    monkeypatch.setattr(WorkerPool, "StartWorker", record)
    root, _, files = generated
    spec = PipelineSpec.model_validate({**GEN_RECIPE, "engine": {"name": "beam"}})
    engine = BeamEngine(spec.engine)
    executor = futures.ThreadPoolExecutor(1)
    try:
        run_pipeline(spec, [str(root / "in")], str(tmp_path / "out"), engine, close=False)
        assert _tree(tmp_path / "out") == files
        assert handed and all(url.startswith("127.0.0.1:") for url in handed), handed
        pool = engine._pool
        taken = [int(pool.address.rsplit(":", 1)[1])] + [int(w.address.rsplit(":", 1)[1]) for w in pool._workers]
        assert len(taken) == 1 + engine.workers
        for port in taken:
            with pytest.raises(RuntimeError, match="Failed to bind"):
                grpc.server(executor).add_insecure_port(f"127.0.0.1:{port}")  # gRPC's default: SO_REUSEPORT
            with pytest.raises(RuntimeError, match="Failed to bind"):
                worker_handlers.grpc.server(executor).add_insecure_port(f"[::]:{port}")  # a server of Beam's runner
        # a runner server's `[::]:0` is a port on 127.0.0.1 alone, and nobody can join it
        runner_server = worker_handlers.grpc.server(executor)
        port = runner_server.add_insecure_port("[::]:0")
        runner_server.start()
        try:
            addresses = {addr for addr, p in _listening() if p == port}
            assert addresses and addresses <= {"0100007F", "0000000000000000FFFF00000100007F"}, addresses
            with pytest.raises(RuntimeError, match="Failed to bind"):
                grpc.server(executor).add_insecure_port(f"127.0.0.1:{port}")
        finally:
            runner_server.stop(0)
    finally:
        engine.close()
        executor.shutdown()
