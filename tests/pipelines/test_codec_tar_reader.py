"""The streaming tar reader agrees with `tarfile` on archives other tools write (GNU, pax, ustar, long and
non-ASCII names, directories, gzip/bz2/xz) and notices every way an archive can be cut or corrupted."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from pipelines.codec import TarSamples, open_url

MEMBERS = {
    "a/000001.jpg": b"\xff\xd8" + b"j" * 700,
    "a/000001.txt": b"a caption",
    "a/000001.json": b'{"x": 1}',
    "a/000002.jpg": b"",  # an empty member is still a member
    "a/000002.txt": "été".encode(),
    "long/" + "d" * 120 + "/000003.seg.png": b"p" * 1300,  # > 100 chars: pax path or GNU longname
    "long/" + "d" * 120 + "/000003.seg.txt": b"long",
    "naïve/000004.txt": b"non-ascii name",
}


def write(path: Path, fmt: int, mode: str = "w") -> Path:
    with tarfile.open(path, mode, format=fmt) as tf:
        info = tarfile.TarInfo("a")
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
        for name, data in MEMBERS.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def read(path: Path) -> tuple[list[dict], str | None]:
    with open_url(str(path)) as stream:
        reader = TarSamples(stream)
        return list(reader), reader.error


def expected() -> list[dict]:
    samples: list[dict] = []
    for name, data in MEMBERS.items():
        slash = name.rfind("/")
        dot = name.find(".", slash + 1)
        key, ext = name[:dot], name[dot + 1 :]
        if not samples or samples[-1]["__key__"] != key:
            samples.append({"__key__": key})
        samples[-1][ext] = data
    return samples


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_reads_what_tarfile_writes(tmp_path, fmt, mode):
    if fmt == tarfile.USTAR_FORMAT:
        plain = {k: v for k, v in MEMBERS.items() if not k.startswith("long/") and k.isascii()}
        path = tmp_path / "u.tar"
        with tarfile.open(path, mode, format=fmt) as tf:
            for name, data in plain.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        samples, error = read(path)
        assert error is None
        assert [s["__key__"] for s in samples] == ["a/000001", "a/000002"]
        return
    samples, error = read(write(tmp_path / "t.tar", fmt, mode))
    assert error is None
    assert samples == expected()


def test_limit_stops_early(tmp_path):
    with open_url(str(write(tmp_path / "t.tar", tarfile.PAX_FORMAT))) as stream:
        reader = TarSamples(stream, limit=2)
        assert [s["__key__"] for s in reader] == ["a/000001", "a/000002"]
        assert reader.error is None


def test_every_cut_is_noticed(tmp_path):
    whole = write(tmp_path / "t.tar", tarfile.GNU_FORMAT).read_bytes()
    with tarfile.open(tmp_path / "t.tar") as tf:
        offsets = {m.name: (m.offset, m.offset_data, m.size) for m in tf}
    cut_file = tmp_path / "cut.tar"
    # Cut at every header and inside every member: never silent, and never more than the samples before the cut.
    for name, (offset, data_offset, size) in offsets.items():
        for cut in {offset, offset + 100, data_offset + size // 2} - {data_offset}:
            cut_file.write_bytes(whole[:cut])
            samples, error = read(cut_file)
            assert error is not None, (name, cut)
            assert len(samples) <= len(expected())
    # The end-of-archive blocks missing: still noticed.
    last = max(o[1] + o[2] for o in offsets.values())
    cut_file.write_bytes(whole[: -(-last // 512) * 512])
    samples, error = read(cut_file)
    assert error is not None and "end-of-archive" in error
    assert samples == expected()


def test_garbage_and_empty_files(tmp_path):
    (tmp_path / "g.tar").write_bytes(b"garbage " * 200)
    assert read(tmp_path / "g.tar") == ([], "not a tar archive")
    (tmp_path / "e.tar").write_bytes(b"")
    assert read(tmp_path / "e.tar") == ([], "empty file")
    whole = bytearray(write(tmp_path / "t.tar", tarfile.GNU_FORMAT).read_bytes())
    with tarfile.open(tmp_path / "t.tar") as tf:
        third = tf.getmembers()[3].offset
    whole[third + 10] ^= 0xFF  # a byte of the third file's header flipped: its checksum no longer matches
    (tmp_path / "c.tar").write_bytes(bytes(whole))
    samples, error = read(tmp_path / "c.tar")
    assert error is not None and "corrupt header" in error
    # What was read before the bad header is kept: the first sample's jpg and txt, whole.
    assert samples == [{k: v for k, v in expected()[0].items() if k != "json"}]
