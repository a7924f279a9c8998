"""A class-data archive (AppCDS) for the Spark driver's JVM: the classes a curation run loads, already parsed and
verified, mapped from one file at start instead of read from Spark's jars.

Measured on 2 cores (docs/performance.md): a 200-image `vlmdata curate --engine spark` took 23.8-28.1 s end to end
without it and 16.9-17.3 s with it, about 10 s less CPU, almost all of it the JVM's start (class loading,
verification, interpreting at first use).

- `python -m pipelines.engines.jvm_archive` (the setup script runs it) builds the archive once per environment: it
  runs a small curation on a fresh JVM that records its classes, and the JVM writes them when it exits (about a
  minute). Idempotent: an archive that exists is kept.
- `spark_session` then adds `java_options()` to the driver's JVM options. Nothing is built at run time: a run never
  pays for the recording.
- The archive lives in this Python environment (`sys.prefix/var/vlmdata/`), next to the pyspark jars it was made
  from; its name carries the pyspark version and the `java` it was made with, so a different Spark or JDK finds no
  archive and starts as before. `VLMDATA_JVM_ARCHIVE=/path/x.jsa` puts it elsewhere, `VLMDATA_JVM_ARCHIVE=off`
  turns it off.
- A truncated archive crashes the JVM (SIGBUS) rather than being ignored, so one is only ever moved into place
  whole: written under a temporary name, opened once by a `java -version` with it, then renamed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ENV = "VLMDATA_JVM_ARCHIVE"
# A stale archive (another JDK build, a changed class path) is skipped by the JVM with a warning on stdout: quiet.
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def java_binary() -> str | None:
    """The `java` the Spark launcher runs: $JAVA_HOME/bin/java, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


def archive_path() -> Path | None:
    """Where this environment's archive is (or would be built); None when turned off or there is no Java."""
    setting = os.environ.get(ENV, "").strip()
    if setting.lower() in ("off", "0", "false", "no"):
        return None
    if setting:
        return Path(setting)
    java = java_binary()
    if java is None:
        return None
    import pyspark

    real = os.path.realpath(java)
    st = os.stat(real)
    key = hashlib.sha1(f"{real}:{st.st_size}:{st.st_mtime_ns}:{pyspark.__file__}".encode()).hexdigest()[:12]
    return Path(sys.prefix) / "var" / "vlmdata" / f"spark-{pyspark.__version__}-{key}.jsa"


def java_options() -> str:
    """Driver JVM options that map the archive, or "" when there is none (the JVM then starts as before)."""
    path = archive_path()
    if path is None or not path.is_file():
        return ""
    return f"-XX:SharedArchiveFile={path} {QUIET}"


def build(path: Path | None = None, *, force: bool = False, timeout: float = 600) -> Path | None:
    """Build the archive at `path` (default `archive_path()`) unless it exists; returns it, or None when off.
    Raises RuntimeError when the recording run or the check of its archive fails (nothing is left in place).
    Archives of other Spark or JDK builds beside it (the same folder, `spark-*.jsa`) are removed."""
    path = path or archive_path()
    if path is None or (path.is_file() and not force):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".jsa-", dir=path.parent) as tmp:
        recorded = Path(tmp) / path.name
        done = subprocess.run([sys.executable, "-m", "pipelines.engines.jvm_archive", "--record", str(recorded)],
                              capture_output=True, text=True, timeout=timeout, env={**os.environ, ENV: "off"}, cwd=tmp)
        if done.returncode != 0 or not recorded.is_file():
            raise RuntimeError(f"recording the JVM's classes failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        place(recorded, path)
    if path.name.startswith("spark-"):
        for stale in path.parent.glob("spark-*.jsa"):
            if stale != path:
                stale.unlink(missing_ok=True)
    return path


def place(recorded: Path, path: Path) -> None:
    """Move a recorded archive to `path` once a JVM has opened it and said it shares classes: a truncated one crashes
    the JVM (its crash report goes to the recording's folder, not the caller's), one that is not an archive is
    ignored by it; either raises RuntimeError and leaves `path` as it was."""
    java = java_binary() or "java"
    check = subprocess.run([java, f"-XX:SharedArchiveFile={recorded}", "-Xshare:auto", "-version"],
                           capture_output=True, text=True, timeout=120, cwd=recorded.parent)
    if check.returncode != 0 or "sharing" not in check.stderr:
        raise RuntimeError(f"the recorded archive {recorded} does not open (exit {check.returncode}):\n"
                           f"{check.stderr[-2000:]}")
    os.replace(recorded, path)


def _record(target: str) -> None:
    """In a fresh process: a Spark session whose JVM records the classes it loads, a small curation on it (passes,
    an exact and a near-duplicate reduce), then the JVM's exit, which writes `target`."""
    import io

    from PIL import Image
    from pyspark import SparkContext

    from pipelines.engines.spark import SparkEngine, spark_session
    from pipelines.run import run_pipeline
    from pipelines.spec import EngineConfig, PipelineSpec, ShardConfig, StageSpec

    config = EngineConfig(master="local[2]")
    session = spark_session(config, app_name="vlmdata-jvm-archive", java_options=f"-XX:ArchiveClassesAtExit={target}")
    with tempfile.TemporaryDirectory(prefix="vlmdata-jsa-") as work:
        inputs = Path(work) / "in"
        inputs.mkdir()
        for i in range(24):
            img = Image.new("RGB", (64 + i, 48), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
            img.paste((255, 255, 255), (i, 8, i + 16, 24))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=90)
            for copy in range(1 + i % 2):  # exact duplicates for the exact reduce
                (inputs / f"{i:03d}-{copy}.jpg").write_bytes(buf.getvalue())
                (inputs / f"{i:03d}-{copy}.txt").write_text(f"a picture of a square number {i % 5}")
        spec = PipelineSpec(
            name="jvm-archive",
            reader={"part_size": 8},
            stages=[StageSpec(op="decode"), StageSpec(op="heuristics", min_side=16), StageSpec(op="exact_dedup"),
                    StageSpec(op="near_dedup")],
            shards=ShardConfig(max_samples=16),
            engine=config,
        )
        run_pipeline(spec, [str(inputs)], str(Path(work) / "out"), SparkEngine(config, session))
    session.stop()
    gateway = SparkContext._gateway
    if gateway is not None:  # the JVM writes the archive as it exits: wait for it
        proc = gateway.proc
        gateway.shutdown()
        proc.stdin.close()
        proc.wait(timeout=300)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--record"]:
        _record(args[1])
        return 0
    path = archive_path()
    if path is None:
        return 0  # off (VLMDATA_JVM_ARCHIVE=off) or no java: runs start the JVM as before
    if path.is_file() and "--force" not in args:
        return 0  # quiet: the setup script calls this on every run
    print(f"[jvm archive] recording the Spark driver's classes once (about a minute): {path}", flush=True)
    build(path, force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
