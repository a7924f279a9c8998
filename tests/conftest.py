"""Shared fixtures: one Spark session, one Prefect test server and one demo corpus per test session."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
# Engine workers (Spark, Beam) are other processes: let them import test operators (`tests.ops:…`) too.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)


@pytest.fixture(scope="session")
def spark():
    from pipelines.engines.spark import spark_session
    from pipelines.spec import EngineConfig

    session = spark_session(EngineConfig(master="local[2]"), app_name="vlmdata-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def prefect_server():
    """Prefect's own test harness: a temporary API server and database for the whole session."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory):
    """The real demo corpus (Debian's tuxpaint stamps + injected faults), built once."""
    from synth.demo_corpus import build_demo_corpus

    root = tmp_path_factory.mktemp("demo")
    manifest = build_demo_corpus(root)
    return root, manifest
