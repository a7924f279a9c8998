"""The Spark driver's class-data archive: used when built, never placed unless a JVM opens it, and a user's own
JVM settings win."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.engines import jvm_archive
from pipelines.engines.spark import JAVA_OPTIONS, session_conf
from pipelines.spec import EngineConfig

REPO = Path(__file__).resolve().parents[2]


def _fresh_process(script: str) -> subprocess.CompletedProcess:
    """`script` in a new interpreter: its own driver JVM (the test session's is already up in this one)."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_java_options_map_an_archive_only_when_one_exists(tmp_path, monkeypatch):
    archive = tmp_path / "x.jsa"
    monkeypatch.setenv(jvm_archive.ENV, str(archive))
    assert jvm_archive.archive_path() == archive
    assert jvm_archive.java_options() == ""  # not built: the JVM starts as before
    archive.write_bytes(b"recorded")
    assert jvm_archive.java_options().startswith(f"-XX:SharedArchiveFile={archive} ")
    monkeypatch.setenv(jvm_archive.ENV, "off")
    assert jvm_archive.archive_path() is None and jvm_archive.java_options() == ""


def test_default_archive_lives_in_this_environment_and_names_spark_and_java(monkeypatch):
    import pyspark

    monkeypatch.delenv(jvm_archive.ENV, raising=False)
    path = jvm_archive.archive_path()
    if jvm_archive.java_binary() is None:
        assert path is None
        return
    assert path is not None and path.parent.is_relative_to(sys.prefix)
    assert path.name.startswith(f"spark-{pyspark.__version__}-") and path.suffix == ".jsa"


def test_session_conf_adds_the_archive_to_the_jvm_options_unless_the_user_chose_their_own():
    local = session_conf(EngineConfig(master="local[2]"), java_options="-XX:SharedArchiveFile=/a.jsa")
    assert local[JAVA_OPTIONS].startswith("-XX:TieredStopAtLevel=1")  # the embedded driver's options stay
    assert local[JAVA_OPTIONS].endswith("-XX:SharedArchiveFile=/a.jsa")
    mine = EngineConfig(master="local[2]", conf={JAVA_OPTIONS: "-Xmx2g"})
    assert session_conf(mine, java_options="-XX:SharedArchiveFile=/a.jsa")[JAVA_OPTIONS] == "-Xmx2g -XX:SharedArchiveFile=/a.jsa"
    own = EngineConfig(master="local[2]", conf={JAVA_OPTIONS: "-Xshare:off"})
    assert session_conf(own, java_options="-XX:SharedArchiveFile=/a.jsa")[JAVA_OPTIONS] == "-Xshare:off"
    assert session_conf(EngineConfig(master="local[2]"), java_options="")[JAVA_OPTIONS] == "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


@pytest.mark.skipif(jvm_archive.java_binary() is None, reason="needs a JVM")
def test_an_archive_the_jvm_cannot_share_is_never_placed(tmp_path):
    target = tmp_path / "spark.jsa"
    junk = tmp_path / "rec" / "spark.jsa"
    junk.parent.mkdir()
    junk.write_bytes(b"\x00not an archive" * 4096)  # the JVM ignores it, shares nothing
    with pytest.raises(RuntimeError, match="does not open"):
        jvm_archive.place(junk, target)
    assert not target.exists() and junk.exists()
    built = jvm_archive.archive_path()
    if built is not None and built.is_file():  # a truncated real archive crashes the JVM: caught, not placed
        junk.write_bytes(built.read_bytes()[: 1 << 20])
        with pytest.raises(RuntimeError, match="does not open"):
            jvm_archive.place(junk, target)
        assert not target.exists()
        assert not list(tmp_path.parent.glob("hs_err*")) and not list(Path.cwd().glob("hs_err*"))


def test_the_test_sessions_jvm_maps_the_archive_when_this_environment_has_one(spark):
    jvm = spark.sparkContext._jvm
    args = [str(a) for a in jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()]
    path = jvm_archive.archive_path()
    if path is not None and path.is_file():
        assert f"-XX:SharedArchiveFile={path}" in args
        assert "sharing" in jvm.java.lang.System.getProperty("java.vm.info")  # the JVM opened it
        jcmd = shutil.which("jcmd")
        if jcmd:  # and took Spark's classes from it: the JDK's own archive alone gives about 1,200
            pid = jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getPid()
            counters = subprocess.run([jcmd, str(pid), "PerfCounter.print"], capture_output=True, text=True).stdout
            shared = int(re.search(r"java\.cls\.sharedLoadedClasses=(\d+)", counters).group(1))
            assert shared > 5000, shared
    else:
        assert not any("SharedArchiveFile" in a for a in args)


def test_the_drivers_console_output_goes_to_the_log_not_the_terminal(tmp_path):
    """A fresh process (the test session's JVM is already up): Spark's start-up banner lands in the `vlmdata.jvm`
    logger, the terminal (the process's stderr and stdout) gets none of it, and the session works."""
    log = tmp_path / "run.log"
    script = f"""
import logging
logging.basicConfig(filename={str(log)!r}, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
from pipelines.engines.spark import spark_session
from pipelines.spec import EngineConfig
session = spark_session(EngineConfig(master="local[1]"), app_name="vlmdata-jvm-log-test")
assert session.range(5).count() == 5
session.stop()
"""
    done = _fresh_process(script)
    assert "log4j" not in done.stderr + done.stdout and "NativeCodeLoader" not in done.stderr + done.stdout
    lines = log.read_text().splitlines()
    assert any(line.startswith("INFO vlmdata.jvm: ") and "log4j" in line for line in lines), lines[:20]


def test_a_jvm_that_cannot_start_says_why():
    script = """
from pipelines.engines.spark import JAVA_OPTIONS, spark_session
from pipelines.spec import EngineConfig
try:
    spark_session(EngineConfig(master="local[1]", conf={JAVA_OPTIONS: "-agentlib:nosuchagentlib"}))
except RuntimeError as exc:
    print("RAISED", exc)
"""
    said = _fresh_process(script).stdout.split("RAISED", 1)[1]
    assert "did not start" in said and "nosuchagentlib" in said  # the JVM's own reason, not only py4j's


def test_an_engine_stops_only_a_session_it_started(spark):
    """`close` ends the engine's own session (a cluster's application ends with the run); a session it was given, or
    one getOrCreate found already running in this process, stays up for its owner."""
    from pipelines.engines.spark import SparkEngine

    given = SparkEngine(EngineConfig(master="local[2]"), spark)
    given.close()
    found = SparkEngine(EngineConfig(master="local[2]"))
    assert found.session.sparkContext is spark.sparkContext
    found.close()
    assert spark.range(3).count() == 3  # still running
