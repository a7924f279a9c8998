"""PySpark's Python worker daemon (`pyspark.daemon`), importing the installed pyspark instead of Spark's zips.

Spark starts its Python workers with `SPARK_HOME/python/lib/pyspark.zip` and py4j's source zip first on PYTHONPATH
(and the spark-core jar after them). Python compiles modules imported from a zip of sources on every import (a zip has no
`__pycache__`): here 1.9 s of CPU to start the daemon and its first worker, against 0.46 s from the installed, compiled
modules, on the critical path of a run's first task. And every task re-reads the archives' directories (the worker
invalidates the import caches when it sets up the task's files): 55 ms each time for the jar alone, which holds no
Python at all.

When this interpreter has pyspark installed at the version the zip holds (the usual case: `pip install pyspark`, whose
`SPARK_HOME` is that very package), the zips and the jar are taken off `sys.path` before pyspark is imported;
otherwise nothing changes. Everything else is PySpark's own daemon: it still imports the worker module after each fork.
Set as `spark.python.daemon.module` for a master on this host (pipelines.engines.spark.session_conf).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import re
import sys
import zipfile

_VERSION = re.compile(r"""__version__\s*(?::\s*str\s*)?=\s*["']([^"']+)["']""")


def _version(text: str) -> str | None:
    """The `__version__` a pyspark `version.py` sets."""
    m = _VERSION.search(text)
    return m.group(1) if m else None


def _zip_version(path: str) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            return _version(z.read("pyspark/version.py").decode())
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError):
        return None


def _installed_version(path_without_zips: list[str]) -> str | None:
    spec = importlib.machinery.PathFinder.find_spec("pyspark", path_without_zips)
    if spec is None or not spec.submodule_search_locations:
        return None
    if importlib.machinery.PathFinder.find_spec("py4j", path_without_zips) is None:
        return None  # pyspark imports py4j: without the zip it must be installed too
    try:
        with open(os.path.join(next(iter(spec.submodule_search_locations)), "version.py"), encoding="utf-8") as f:
            return _version(f.read())
    except OSError:
        return None


_SPARK_ENTRY = re.compile(r"pyspark\.zip|py4j-.*-src\.zip|spark-core_.*\.jar")


def prefer_installed(path: list[str]) -> list[str]:
    """`path` without what Spark put on it for pyspark (its pyspark and py4j zips, and the spark-core jar, which it
    adds in case pyspark was packed into an assembly jar) when the pyspark installed outside them has the zip's
    version (the zips' code is then the installed code); else `path` unchanged."""
    zips = [p for p in path if os.path.basename(p) == "pyspark.zip"]
    if not zips:
        return path
    others = [p for p in path if not _SPARK_ENTRY.fullmatch(os.path.basename(p))]
    version = _zip_version(zips[0])
    if version is None or _installed_version(others) != version:
        return path
    return others


def main() -> None:
    kept = prefer_installed(sys.path)
    dropped = tuple(set(sys.path) - set(kept))
    for entry in [e for e in sys.path_importer_cache if e.startswith(dropped)]:  # none when nothing was dropped
        # a finder cached for a zip or jar (and its subfolders) re-reads the archive's directory at every task's
        # invalidate_caches(): 55 ms for spark-core's 6,000 entries
        del sys.path_importer_cache[entry]
    sys.path[:] = kept
    importlib.invalidate_caches()
    from pyspark.daemon import manager

    manager()


if __name__ == "__main__":
    main()
