"""Turn what a user names (output folders, shard folders, tars, globs, `{00000..00009}` patterns, wids index.json,
fsspec URLs) into a list of shard URLs, plus the run folders whose stats.json/ledger describe how they were made."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import braceexpand
import fsspec
from fsspec.implementations.local import LocalFileSystem

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_GLOB_CHARS = set("*?[")


class SourceError(ValueError):
    """An input names nothing readable."""


@dataclass
class Sources:
    shards: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)  # output folders holding stats.json / ledger.parquet
    filesizes: dict[str, int] = field(default_factory=dict)  # from wids index.json, when it lists them


def _url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def _join(base: str, name: str) -> str:
    return name if "://" in name or name.startswith("/") else f"{base.rstrip('/')}/{name}"


def _is_shard(path: str) -> bool:
    return path.endswith(SHARD_SUFFIXES)


def _add_index(out: Sources, fs: fsspec.AbstractFileSystem, path: str) -> None:
    with fs.open(path, "r") as f:
        index = json.load(f)
    base = _url(fs, os.path.dirname(path))
    for entry in index.get("shardlist", []):
        url = _join(base, entry["url"])
        out.shards.append(url)
        if isinstance(entry.get("filesize"), int):
            out.filesizes[url] = entry["filesize"]


def _add_folder(out: Sources, fs: fsspec.AbstractFileSystem, path: str) -> None:
    path = path.rstrip("/")
    if fs.isdir(f"{path}/shards") and (fs.exists(f"{path}/stats.json") or fs.exists(f"{path}/ledger.parquet")):
        out.runs.append(_url(fs, path))
        path = f"{path}/shards"
    if fs.exists(f"{path}/index.json"):
        _add_index(out, fs, f"{path}/index.json")
        return
    found = sorted(p for p in fs.find(path) if _is_shard(p))
    out.shards.extend(_url(fs, p) for p in found)


def _exists(item: str) -> bool:
    """The input names an existing file or folder as it is spelled (its braces and brackets are part of its name)."""
    try:
        fs, path = fsspec.core.url_to_fs(item)
        return bool(fs.exists(path))
    except Exception:  # noqa: BLE001 - not a path fsspec can check: expanded and globbed as a pattern
        return False


def resolve(inputs: list[str]) -> Sources:
    """Every shard URL the inputs name, in order, each once. Raises SourceError for an input that names none."""
    out = Sources()
    for given in inputs:
        before = len(out.shards)
        for item in [given] if _exists(given) else braceexpand.braceexpand(given):
            fs, path = fsspec.core.url_to_fs(item)
            if _GLOB_CHARS & set(path) and not fs.exists(path):  # a name with [ or * in it is itself first
                for match in sorted(fs.glob(path)):
                    if fs.isdir(match):
                        _add_folder(out, fs, match)
                    elif _is_shard(match):
                        out.shards.append(_url(fs, match))
            elif path.endswith(".json"):
                _add_index(out, fs, path)
            elif _is_shard(path):
                # Not stat'ed here: a missing shard is reported by the scan as unreadable, with the rest summarised.
                out.shards.append(_url(fs, path))
            elif fs.isdir(path):
                _add_folder(out, fs, path)
            else:
                raise SourceError(f"{item}: no such shard, folder, glob or index.json")
        if len(out.shards) == before:
            raise SourceError(f"{given}: names no WebDataset shards (.tar, .tar.gz, .tgz)")
    seen: set[str] = set()
    out.shards = [s for s in out.shards if not (s in seen or seen.add(s))]
    return out
