"""Paths and URIs through fsspec: local paths stay the default; `s3://`, `gs://`, `file://`, `http://` … work too."""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import IO, Any

import fsspec
from fsspec.core import url_to_fs


def is_url(path: str) -> bool:
    return "://" in path


@lru_cache(maxsize=64)
def _fs_for(protocol_root: str) -> fsspec.AbstractFileSystem:
    return url_to_fs(protocol_root)[0]


def fs_of(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of `path` and the path as that filesystem names it."""
    if not is_url(path):
        return _fs_for("file:///"), os.path.abspath(path)
    fs, inner = url_to_fs(path)
    return fs, inner


def join(base: str, *names: str) -> str:
    return posixpath.join(base, *names) if is_url(base) else os.path.join(base, *names)


def dirname(path: str) -> str:
    return posixpath.dirname(path.rstrip("/")) if is_url(path) else os.path.dirname(path)


def basename(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) if is_url(path) else os.path.basename(os.path.normpath(path))


def relpath(path: str, root: str) -> str:
    if is_url(path):
        return posixpath.relpath(fs_of(path)[1], fs_of(root)[1])
    return os.path.relpath(path, root)


def exists(path: str) -> bool:
    fs, p = fs_of(path)
    return fs.exists(p)


def isdir(path: str) -> bool:
    fs, p = fs_of(path)
    return fs.isdir(p)


def getsize(path: str) -> int:
    fs, p = fs_of(path)
    return int(fs.size(p))


def listdir(path: str) -> list[str]:
    """Names (not paths) in a folder, sorted; empty when it does not exist."""
    fs, p = fs_of(path)
    if not fs.exists(p):
        return []
    return sorted(posixpath.basename(e.rstrip("/")) for e in fs.ls(p, detail=False))


def walk_files(root: str) -> list[tuple[str, int]]:
    """Every regular file under `root` as (path relative to root, size), in sorted order. On a local disk a symbolic
    link to a regular file counts as one, with its target's size, wherever it points (symlink farms are a common
    dataset layout). Left out, see `walk_special`: named pipes, sockets and devices (reading one would hang or never
    end), links that lead nowhere, and links to folders (not followed: loops, samples counted twice)."""
    fs, p = fs_of(root)
    local = local_path(root) is not None
    found = fs.find(p, detail=True)
    base = p.rstrip("/") + "/"
    out = []
    for name, info in found.items():
        if not name.startswith(base):
            continue
        kind = info.get("type", "file")
        # fsspec types a local link "other" whatever it leads to; the OS says whether it ends at a regular file.
        if (kind in ("file", "other") and is_regular(name)) if local else kind == "file":
            out.append((name[len(base):], int(info.get("size") or 0)))
    return sorted(out)


def walk_special(root: str) -> list[str]:
    """Entries under a local `root` that `walk_files` leaves out but a user may have meant as input: named pipes,
    sockets, devices, links that lead nowhere (or in a loop) and links to folders (see `not_regular_reason`)."""
    local = local_path(root)
    if local is None:
        return []
    out = []
    for folder, dirs, names in os.walk(local):
        for name in names:
            path = os.path.join(folder, name)
            if not is_regular(path):
                out.append(os.path.relpath(path, local))
        for name in dirs:  # os.walk lists a link to a folder among the folders, and does not descend it
            path = os.path.join(folder, name)
            if os.path.islink(path):
                out.append(os.path.relpath(path, local))
    return sorted(out)


def walk_unreadable(root: str, named: Callable[[str], bool]) -> list[str]:
    """Paths under a local `root` a file source must still give a row though it never opens them: the entries of
    `walk_special` its own kind of name picks out (`named`: a pipe or dangling link called x.tar), and links to
    folders (read as `not_regular_reason` says)."""
    return [path for path in (join(root, rel) for rel in walk_special(root))
            if named(path) or not_regular_reason(path) == "symlink_to_folder"]


def not_regular_reason(path: str) -> str:
    """The ledger reason for an entry `walk_special` listed: `symlink_to_folder` for a local link to a folder (its
    files are not read: give the folder itself as an input), else `not_a_regular_file`."""
    local = local_path(path)
    if local is not None and os.path.islink(local) and os.path.isdir(local):
        return "symlink_to_folder"
    return "not_a_regular_file"


def local_path(path: str) -> str | None:
    """The OS path of a local file or folder (a plain path or a file:// URL); None on any other filesystem."""
    if not is_url(path):
        return path
    return path.removeprefix("file://") if path.startswith("file://") else None


def is_regular(path: str) -> bool:
    """A regular file (following links); always True for object-store paths."""
    local = local_path(path)
    if local is None:
        return True
    try:
        return stat.S_ISREG(os.stat(local).st_mode)
    except OSError:
        return False


def makedirs(path: str) -> None:
    fs, p = fs_of(path)
    fs.makedirs(p, exist_ok=True)


def open_file(path: str, mode: str = "rb") -> IO[Any]:
    fs, p = fs_of(path)
    return fs.open(p, mode)


def read_bytes(path: str) -> bytes:
    local = local_path(path)
    if local is not None:  # a plain open: half the cost of fsspec's opener per small file (a read per image)
        with open(local, "rb") as f:
            return f.read()
    with open_file(path, "rb") as f:
        return f.read()


def tmp_path(path: str) -> str:
    """Where a file is written before `replace` moves it to `path` (one name per process)."""
    return f"{path}.tmp-{os.getpid()}"


@contextmanager
def atomic_target(path: str) -> Iterator[str]:
    """Yield a temporary name to write `path` under; on success it replaces `path`, on failure (a full disk, an
    exception) it is removed, so a failed or retried task leaves no `*.tmp-PID` debris."""
    tmp = tmp_path(path)
    try:
        yield tmp
    except BaseException:
        try:
            remove(tmp)
        except OSError:
            pass
        raise
    replace(tmp, path)


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` so that readers see the old file or the whole new one, never a part."""
    with atomic_target(path) as tmp, open_file(tmp, "wb") as f:
        f.write(data)


def write_parquet_atomic(path: str, table: Any) -> None:
    """Write a pyarrow Table as Parquet under a temporary name, then move it into place."""
    import pyarrow.parquet as pq

    with atomic_target(path) as tmp, open_file(tmp, "wb") as f:
        pq.write_table(table, f)


def replace(src: str, dst: str) -> None:
    """Move `src` over `dst`: an atomic rename on local disks, a move (whole-object put) on object stores."""
    if not is_url(src) and not is_url(dst):
        os.replace(src, dst)
        return
    fs, s = fs_of(src)
    _, d = fs_of(dst)
    fs.mv(s, d)


def remove(path: str) -> None:
    fs, p = fs_of(path)
    if fs.exists(p):
        fs.rm(p)


def rmtree(path: str) -> None:
    fs, p = fs_of(path)
    if fs.exists(p):
        fs.rm(p, recursive=True)
