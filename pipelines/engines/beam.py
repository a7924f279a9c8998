"""Beam engine: a pass is a ParDo over part descriptors; a reduce is GroupByKey / CombinePerKey over key rows.

Embedded default: Beam's portable local runner (the FnApiRunner the DirectRunner delegates batch pipelines to) with an
EXTERNAL environment served by a pool of long-lived SDK worker processes, one per core, started once per engine: a
run builds one pipeline per pass and per reduce, and starting a pipeline's worker processes afresh (what the
DirectRunner's multi_processing mode does) cost ~2.7 s each here, more than a reduce takes. Workers keep their
imports and set-up operators across pipelines, as the local engine's pool and Spark's reused Python workers do.
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import grpc
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc, beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.runners.portability.fn_api_runner.fn_runner import ExtendedProvisionInfo, FnApiRunner
from apache_beam.runners.portability.portable_runner import JobServiceHandle
from apache_beam.transforms.environments import ExternalEnvironment, python_sdk_capabilities

from pipelines.execute import PassRunner
from pipelines.global_stage import (
    CountOperator,
    DedupOperator,
    best_survivor,
    bucket_candidates,
    bucket_schema,
    comparable,
    entries_of,
    explode,
)
from pipelines.readers.base import Part
from pipelines.spec import EngineConfig

# The pool's workers are the environment; `in_memory` keeps the runner from replacing it with fresh subprocesses.
POOL_OPTIONS = ["--direct_running_mode=in_memory"]
WORKER_START_TIMEOUT_S = 120  # a worker process imports Beam, pyarrow and the pipeline modules before it answers
_WORKER_MAIN = "from pipelines.engines.beam import serve_worker; serve_worker()"


LOOPBACK = "127.0.0.1"


def loopback_server(*args: Any, options: Any = None, **kwargs: Any) -> grpc.Server:
    """`grpc.server` without SO_REUSEPORT. gRPC sets it on every listening socket by default, so a second server can
    bind a port another one already holds (a bind on `localhost:0` takes a port free on ::1, then takes that port on
    127.0.0.1 beside whoever listens there), and the kernel then hands each new connection to either: a StartWorker
    meant for the pool could land on a pipeline's control server ("Method not found!"). Without it, a held port is
    refused and a port picked for `:0` is one nobody listens on."""
    return grpc.server(*args, options=[*(options or ()), ("grpc.so_reuseport", 0)], **kwargs)


class _LoopbackServer:
    """A gRPC server whose wildcard ports (`[::]:N`) are bound on 127.0.0.1 only; everything else is the server's."""

    def __init__(self, inner: grpc.Server) -> None:
        self._inner = inner

    def add_insecure_port(self, address: str) -> int:
        if address.startswith("[::]:"):
            address = f"{LOOPBACK}:" + address.removeprefix("[::]:")
        return self._inner.add_insecure_port(address)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _LoopbackGrpc(types.ModuleType):
    """`grpc` as Beam's runner-side worker handlers see it: the same module, except that the control, data, state
    and logging servers it starts for each pipeline listen on 127.0.0.1 without SO_REUSEPORT, not on every interface
    (Beam binds `[::]:0`: unauthenticated endpoints that hand out bundles and take data, reachable from the network).
    The workers are local (the pool, or the DirectRunner's subprocesses) and are handed `127.0.0.1:PORT` (below)."""

    def __init__(self) -> None:
        super().__init__("grpc")

    def __getattr__(self, name: str) -> Any:
        return getattr(grpc, name)

    @staticmethod
    def server(*args: Any, **kwargs: Any) -> _LoopbackServer:
        return _LoopbackServer(loopback_server(*args, **kwargs))


def _host_from_worker(handler: worker_handlers.GrpcWorkerHandler) -> str:
    """The host a local worker dials to reach the runner's servers: the address they listen on. Beam hands out
    `localhost` (which may resolve to ::1 first) or, for the EXTERNAL environment, this machine's FQDN (on Debian,
    127.0.1.1 from /etc/hosts, where nothing listens)."""
    return LOOPBACK


worker_handlers.grpc = _LoopbackGrpc()  # type: ignore[assignment]
worker_handlers.GrpcWorkerHandler.host_from_worker = _host_from_worker  # type: ignore[method-assign]
worker_handlers.ExternalWorkerHandler.host_from_worker = _host_from_worker  # type: ignore[method-assign]


_beam_control_read = worker_handlers.ControlConnection._read


class WorkerDied(RuntimeError):
    """A Beam SDK worker process died while the runner waited on it; the pipeline failed instead of hanging."""


def _read_then_abort(conn: worker_handlers.ControlConnection) -> None:
    """Beam's runner-side read loop of a worker's control stream, and then what Beam leaves out: when the stream ends
    or breaks while instructions are still unanswered (the worker process was killed, ran out of memory or crashed in
    native code), those instructions fail, so the pipeline fails with this error instead of waiting forever."""
    try:
        _beam_control_read(conn)
        error = WorkerDied("a Beam SDK worker closed its control stream with instructions unanswered: the worker "
                           "process died (killed, out of memory, or a crash in native code)")
    except Exception as exc:  # noqa: BLE001 - whatever broke the stream, the pending instructions must fail
        error = WorkerDied(f"a Beam SDK worker's control stream broke ({type(exc).__name__}): the worker process "
                           "died (killed, out of memory, or a crash in native code)")
    conn._vlmdata_died = error  # before the pending ones are listed: a push after this fails at once (below)
    for future in list(conn._futures_by_id.values()):
        future.abort(error)


_beam_control_push = worker_handlers.ControlConnection.push


def _push_unless_died(conn: worker_handlers.ControlConnection, req: Any) -> Any:
    """Beam's push of an instruction; on a connection whose worker has died the instruction fails at once instead of
    waiting for an answer that cannot come (checked after the push, so a race with the reader fails it either way)."""
    future = _beam_control_push(conn, req)
    error = getattr(conn, "_vlmdata_died", None)
    if error is not None and future is not None:
        future.abort(error)
    return future


worker_handlers.ControlConnection._read = _read_then_abort  # type: ignore[method-assign]
worker_handlers.ControlConnection.push = _push_unless_died  # type: ignore[method-assign]


def serve_worker() -> None:
    """One pool process: Beam's external worker-pool service on a loopback port, printed on stdout; each StartWorker
    runs an SDK harness as a thread of this process, connected to that pipeline's runner. Exits when its stdin closes
    (the engine closed it, or the engine's process died)."""
    import os

    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer
    from apache_beam.utils import thread_pool_executor

    logging.getLogger().setLevel(logging.WARNING)
    server = loopback_server(thread_pool_executor.shared_unbounded_instance())
    port = server.add_insecure_port(f"{LOOPBACK}:0")
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(
        BeamFnExternalWorkerPoolServicer(use_process=False), server)
    server.start()
    print(f"{LOOPBACK}:{port}", flush=True)
    # Nobody reads the pipe after the address: what operators print goes to stderr, so a full pipe never blocks them.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdin.read()
    server.stop(0)
    sys.stderr.flush()
    os._exit(0)  # harness and gRPC threads hold nothing that needs a clean interpreter shutdown


class _Worker:
    """A pool process and the stub of its worker-pool service."""

    def __init__(self) -> None:
        # Started as `python -c` from the caller's working directory and environment, as Beam's own subprocess workers
        # are: the same modules (plug-in operators included) import there; no script's __main__ is re-run.
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER_MAIN], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.address = ""
        self.channel: grpc.Channel | None = None
        self.stub: beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub | None = None

    def connect(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line:
            code = self.proc.wait(timeout=WORKER_START_TIMEOUT_S)
            raise RuntimeError(f"beam: a worker process exited with code {code} before it served (see its output above)")
        self.address = line
        self.channel = grpc.insecure_channel(line)
        grpc.channel_ready_future(self.channel).result(timeout=WORKER_START_TIMEOUT_S)
        self.stub = beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(self.channel)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class WorkerPool(beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolServicer):
    """`size` long-lived worker processes behind one EXTERNAL-environment endpoint (loopback). The runner asks for one
    worker per `--direct_num_workers`; the pool hands each pipeline's requests to its processes in turn, so every
    pipeline spreads over all of them. A process that died (a crash, an OOM kill) is replaced before the next
    pipeline; the pipeline it was in fails (`WorkerDied`) and `BeamEngine.run_pass` runs the pass again."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self._workers: list[_Worker] = []
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.address = ""

    def start(self) -> str:
        """Start (or revive) the processes and the endpoint; reset the turn so the next pipeline uses every process."""
        with self._lock:
            for i, w in enumerate(self._workers):
                if not w.alive():
                    w.close()
                    self._workers[i] = _Worker()
            fresh = [_Worker() for _ in range(self.size - len(self._workers))]
            self._workers.extend(fresh)
            for w in self._workers:  # started above all at once: their imports overlap
                if w.stub is None:
                    w.connect()
            self._turn = itertools.count()
            if self._server is None:
                self._server = loopback_server(_executor())
                port = self._server.add_insecure_port(f"{LOOPBACK}:0")
                beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(self, self._server)
                self._server.start()
                self.address = f"{LOOPBACK}:{port}"
        return self.address

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    def any_dead(self) -> bool:
        """A process of the pool has died (it is replaced at the next `start`)."""
        with self._lock:
            return any(not w.alive() for w in self._workers)

    def StartWorker(self, request: beam_fn_api_pb2.StartWorkerRequest, context: Any) -> beam_fn_api_pb2.StartWorkerResponse:  # noqa: N802
        with self._lock:
            worker = self._workers[next(self._turn) % len(self._workers)]
        if not worker.alive() or worker.stub is None:
            return beam_fn_api_pb2.StartWorkerResponse(error=f"beam: worker process {worker.proc.pid} is not running")
        return worker.stub.StartWorker(request, timeout=WORKER_START_TIMEOUT_S)

    def StopWorker(self, request: beam_fn_api_pb2.StopWorkerRequest, context: Any) -> beam_fn_api_pb2.StopWorkerResponse:  # noqa: N802
        # A harness ends with its pipeline (the runner closes its control stream); the process stays for the next one.
        return beam_fn_api_pb2.StopWorkerResponse()

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop(0)
                self._server = None
            for w in self._workers:
                w.close()
            self._workers = []


def _executor() -> Any:
    from apache_beam.utils import thread_pool_executor

    return thread_pool_executor.shared_unbounded_instance()


class _PoolModeWarning(logging.Filter):
    """The runner warns that `in_memory` with several workers gives no parallelism: true of its own embedded worker,
    not of an external environment whose workers are separate processes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "direct_running_mode should be" not in record.getMessage()


logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner").addFilter(_PoolModeWarning())


def _keys_of(runner: PassRunner, k: int):
    def read(part_json: str) -> Iterator[pa.RecordBatch]:
        yield from runner.read_keys(k, Part.model_validate_json(part_json).id)

    return read


def _candidates(op: DedupOperator, state: Any, schema: pa.Schema, members: list[dict[str, Any]]):
    """(loser key, candidate row) of one bucket; a bucket with no pair to compare never becomes a table."""
    if not comparable(members):
        return []
    table = pa.Table.from_pylist(members, schema=bucket_schema(schema))
    return [(r["key"], r) for r in _rows(bucket_candidates(op, state, table))]


def _rows(table_or_batch: pa.RecordBatch | pa.Table) -> list[dict[str, Any]]:
    return table_or_batch.to_pylist()


class BeamEngine:
    """Same passes, reduce steps and files as the Spark engine, scheduled by Beam; runner options pass through.
    Configured `beam_options` (any runner: Flink, Dataflow, Spark, the DirectRunner) hold for every pipeline; without
    them, the embedded worker pool runs every pass and reduce, and `close()` stops it."""

    name = "beam"

    def __init__(self, config: EngineConfig | None = None):
        self.config = config or EngineConfig(name="beam")
        self._pool: WorkerPool | None = None

    @property
    def embedded(self) -> bool:
        return not self.config.beam_options

    def options(self) -> PipelineOptions:
        """The configured `beam_options`, or the embedded default: one worker of the pool per core."""
        if not self.embedded:
            return PipelineOptions(list(self.config.beam_options))
        return PipelineOptions([*POOL_OPTIONS, f"--direct_num_workers={self.workers}"])

    @property
    def workers(self) -> int:
        return self.config.parallelism()

    def pool_pids(self) -> list[int]:
        """The embedded pool's worker processes (empty before the first pipeline and after `close`)."""
        return self._pool.pids() if self._pool is not None else []

    def _pipeline(self) -> beam.Pipeline:
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
        options = self.options()
        if not self.embedded:
            return beam.Pipeline(options=options)
        if self._pool is None:
            self._pool = WorkerPool(self.workers)
        address = self._pool.start()
        provision = ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(
            pipeline_options=JobServiceHandle.encode_pipeline_options(options.get_all_options())))
        runner = FnApiRunner(default_environment=ExternalEnvironment(address, capabilities=python_sdk_capabilities()),
                             provision_info=provision)
        return beam.Pipeline(runner=runner, options=options)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __del__(self) -> None:  # noqa: D105
        pool = getattr(self, "_pool", None)
        if pool is not None:
            try:
                pool.close()
            except Exception:  # noqa: BLE001 - at interpreter exit; the workers also exit when their stdin closes
                pass

    def run_pass(self, runner: PassRunner, parts: list[Part], k: int) -> list[dict[str, Any]]:
        """One pipeline over the parts. A worker process that dies fails the pipeline (`WorkerDied`); it is run again
        on the revived pool up to `task_retries` times, finished parts kept (their markers and spills are complete)."""
        for attempt in itertools.count():
            try:
                with self._pipeline() as pipeline:
                    (
                        pipeline
                        | "parts" >> beam.Create([p.model_dump_json() for p in parts], reshuffle=True)
                        | runner.describe(k) >> beam.Map(lambda text: runner.run(k, Part.model_validate_json(text)))
                    )
                break
            except Exception as exc:
                # the runner's own error when the death came first, or what the pipeline met after it (a harness
                # that could not start on the dead process): a worker of the pool died during this pipeline
                if not isinstance(exc, WorkerDied) and not (self._pool is not None and self._pool.any_dead()):
                    raise
                if attempt >= self.config.task_retries:
                    raise exc if isinstance(exc, WorkerDied) else WorkerDied(f"a Beam worker process died: {exc}") from exc
                logging.getLogger(__name__).warning("beam: pass %d: %s; running it again (%d of %d)", k, exc,
                                                    attempt + 1, self.config.task_retries)
        # Results are on disk (markers, spills), written by the workers: read them rather than collect rows.
        if k < runner.n_passes - 1:
            return [{"part": p.id} for p in parts]
        markers = [runner.layout.marker(p.id) for p in parts]
        missing = [p.id for p, m in zip(parts, markers, strict=True) if m is None]
        if missing:
            raise RuntimeError(f"beam: parts {missing[:10]} have no completion marker after the pipeline finished")
        return markers  # type: ignore[return-value]

    def reduce(self, runner: PassRunner, parts: list[Part], k: int) -> int:
        op = runner.group(k)
        state = runner.fit_state(k, parts)
        schema = runner.keys_schema(k)
        with self._pipeline() as pipeline:
            keys = (
                pipeline
                | "parts" >> beam.Create([p.model_dump_json() for p in parts], reshuffle=True)
                | "read keys" >> beam.FlatMap(_keys_of(runner, k))
            )
            if isinstance(op, CountOperator):
                (
                    keys
                    | "entries" >> beam.FlatMap(lambda b: ((e, 1) for e in entries_of(op, b)))
                    | "count" >> beam.CombinePerKey(sum)
                    | "all counts" >> beam.combiners.ToList()
                    | "write counts" >> beam.Map(
                        lambda pairs: runner.write_counts(k, [e for e, _ in pairs], [c for _, c in pairs]))
                )
            else:
                assert isinstance(op, DedupOperator)
                (
                    keys
                    | "buckets" >> beam.FlatMap(lambda b: ((r["bucket"], r) for r in _rows(explode(op, state, b))))
                    | "group by bucket" >> beam.GroupByKey()
                    | "candidates" >> beam.FlatMap(lambda kv: _candidates(op, state, schema, list(kv[1])))
                    | "group by loser" >> beam.GroupByKey()
                    | "best survivor" >> beam.Map(lambda kv: _rows(best_survivor(pa.Table.from_pylist(list(kv[1]))))[0])
                    | "by part" >> beam.Map(lambda r: (r["part"], (r["key"], r["survivor"])))
                    | "group by part" >> beam.GroupByKey()
                    | "write losers" >> beam.MapTuple(lambda part, pairs: runner.write_losers(k, part, list(pairs)))
                )
        if isinstance(op, CountOperator):
            return len(runner.counts(k))
        return sum(len(runner.losers(k + 1, p.id)) for p in parts)
