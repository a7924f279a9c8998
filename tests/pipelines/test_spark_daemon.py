"""The Spark workers' daemon imports the installed pyspark, not Spark's zips of sources (pipelines.engines.spark_daemon)."""

from __future__ import annotations

import zipfile

from pipelines.engines.spark_daemon import prefer_installed


def _spark_home(root, zip_version: str, installed_version: str | None, py4j: bool = True):
    """A fake SPARK_HOME layout: lib/pyspark.zip at `zip_version`, site/pyspark at `installed_version`, site/py4j."""
    lib, site = root / "lib", root / "site"
    lib.mkdir(parents=True)
    with zipfile.ZipFile(lib / "pyspark.zip", "w") as z:
        z.writestr("pyspark/__init__.py", "")
        z.writestr("pyspark/version.py", f"__version__: str = '{zip_version}'\n")
    (lib / "py4j-0.10.9.9-src.zip").write_bytes((lib / "pyspark.zip").read_bytes())
    (lib / "spark-core_2.13-4.3.0.jar").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    if installed_version is not None:
        (site / "pyspark").mkdir(parents=True)
        (site / "pyspark" / "__init__.py").write_text("")
        (site / "pyspark" / "version.py").write_text(f'__version__ = "{installed_version}"\n')
    if py4j:
        (site / "py4j").mkdir(parents=True, exist_ok=True)
        (site / "py4j" / "__init__.py").write_text("")
    zips = [str(lib / "pyspark.zip"), str(lib / "py4j-0.10.9.9-src.zip"), str(lib / "spark-core_2.13-4.3.0.jar")]
    return zips, str(site)


def test_the_zips_and_spark_core_jar_go_when_the_installed_pyspark_is_the_same_version(tmp_path):
    zips, site = _spark_home(tmp_path, "4.3.0", "4.3.0")
    path = [*zips, "/work/app", site]
    assert prefer_installed(path) == ["/work/app", site]


def test_the_path_is_left_alone_when_the_installed_pyspark_differs_is_missing_or_lacks_py4j(tmp_path):
    for i, (installed, py4j) in enumerate([("4.2.0", True), (None, True), ("4.3.0", False)]):
        zips, site = _spark_home(tmp_path / str(i), "4.3.0", installed, py4j=py4j)
        path = [*zips, site]
        assert prefer_installed(path) == path
    assert prefer_installed(["/usr/lib/python311.zip", "/x"]) == ["/usr/lib/python311.zip", "/x"]  # no Spark entries


def test_spark_tasks_run_the_installed_pyspark_with_no_archive_on_their_path(spark):
    import pyspark

    def probe(_):
        import sys
        import zipimport

        import pyspark as worker_pyspark

        archives = [k for k, v in sys.path_importer_cache.items() if isinstance(v, zipimport.zipimporter)]
        yield worker_pyspark.__file__, archives, [p for p in sys.path if p.endswith((".jar", "pyspark.zip"))]

    results = spark.sparkContext.parallelize(range(2), 2).mapPartitions(probe).collect()
    assert results == [(pyspark.__file__, [], [])] * 2


def test_the_daemon_is_set_for_masters_on_this_host_only_and_a_users_choice_wins():
    from pipelines.engines.spark import session_conf
    from pipelines.spec import EngineConfig

    key = "spark.python.daemon.module"
    for master in ("local[2]", "spark://127.0.0.1:7077", "spark://localhost:7077"):
        assert session_conf(EngineConfig(master=master), java_options="")[key] == "pipelines.engines.spark_daemon"
    assert key not in session_conf(EngineConfig(master="spark://cluster.example:7077"), java_options="")
    mine = EngineConfig(master="local[2]", conf={key: "pyspark.daemon"})
    assert session_conf(mine, java_options="")[key] == "pyspark.daemon"
