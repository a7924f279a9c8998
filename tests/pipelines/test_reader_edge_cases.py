"""Reader edge cases: symbolic links, duplicate and non-regular tar members, unusable Parquet files, image files of
kinds the readers do not take. Every input gets a ledger row (read, or an error with its reason); nothing stops
the rest of the input."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, features

from pipelines.readers import InputError, ReaderConfig, plan_parts, read_part
from pipelines.readers.base import IMAGE_EXTENSIONS
from pipelines.schema import make_key
from tests.images import jpeg_bytes, png_bytes, tar_bytes


def _rows(inputs, **cfg):
    config = ReaderConfig(**{"fingerprint": "stat", **cfg})
    parts = plan_parts([str(i) for i in inputs], config)
    rows = [row for p in parts for b in read_part(p, config) for row in b.to_pylist()]
    assert len({r["key"] for r in rows}) == len(rows), "keys are unique"
    return rows


def _by_source(rows, root):
    """{source relative to root (tar members as `x.tar::member`): (reason or "ok")}."""
    return {str(r["source"]).replace(f"{root}{os.sep}", "", 1): r["reason"] or "ok" for r in rows}


def _pair(folder, stem, seed=0, ext=".jpg"):
    (folder / f"{stem}{ext}").write_bytes(jpeg_bytes(seed=seed))
    (folder / f"{stem}.txt").write_text(f"caption of {stem}")


# ---------------------------------------------------------------- symbolic links


def test_links_to_files_are_read_as_files_and_other_links_get_a_row(tmp_path):
    src, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    src.mkdir()
    elsewhere.mkdir()
    _pair(src, "real")
    os.symlink("real.jpg", src / "inlink.jpg")  # a link to an image inside the input, with a caption of its own
    (src / "inlink.txt").write_text("linked image")
    _pair(elsewhere, "secret", seed=1)
    os.symlink(elsewhere / "secret.jpg", src / "outlink.jpg")  # a symlink farm: image and caption both links
    os.symlink(elsewhere / "secret.txt", src / "outlink.txt")
    os.symlink(tmp_path / "nothing.jpg", src / "dangling.jpg")
    os.symlink("loop.jpg", src / "loop.jpg")
    os.symlink(elsewhere, src / "linkdir")  # a link to a folder: not descended, one row
    os.symlink(elsewhere, src / "named")  # … also when named like a caption's stem
    (src / "named.txt").write_text("a caption beside a folder link")
    rows = _rows([src], dataset="d")
    assert _by_source(rows, src) == {
        "real.jpg": "ok", "inlink.jpg": "ok", "outlink.jpg": "ok",
        "dangling.jpg": "not_a_regular_file", "loop.jpg": "not_a_regular_file",
        "linkdir": "symlink_to_folder", "named": "symlink_to_folder",
    }
    by = {os.path.basename(r["source"]): r for r in rows}
    assert by["inlink.jpg"]["image"] == (src / "real.jpg").read_bytes() and by["inlink.jpg"]["text"] == "linked image"
    assert by["outlink.jpg"]["text"] == "caption of secret" and by["outlink.jpg"]["key"] == make_key("d", "outlink.jpg")
    # The same through a file:// URL.
    assert _by_source(_rows([f"file://{src}"]), f"file://{src}") == _by_source(rows, src)


def test_links_in_tar_and_parquet_folders(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shards, tables = tmp_path / "shards", tmp_path / "tables"
    shards.mkdir()
    tables.mkdir()
    _tar(elsewhere / "far.tar", [("a.jpg", jpeg_bytes()), ("a.txt", b"far away")])
    os.symlink(elsewhere / "far.tar", shards / "near.tar")
    os.symlink(tmp_path / "gone.tar", shards / "gone.tar")
    os.symlink(elsewhere, shards / "more")
    rows = _rows([shards])
    assert _by_source(rows, shards) == {"near.tar::a.jpg": "ok", "gone.tar": "not_a_regular_file",
                                        "more": "symlink_to_folder"}
    pq.write_table(pa.table({"image": [jpeg_bytes()], "text": ["t"]}), elsewhere / "far.parquet")
    os.symlink(elsewhere / "far.parquet", tables / "near.parquet")
    os.symlink(elsewhere, tables / "more")
    assert _by_source(_rows([tables]), tables) == {"near.parquet#row=0": "ok", "more": "symlink_to_folder"}


# ---------------------------------------------------------------- tars


def _tar(path, members):
    """members: (name, bytes) for regular files, `_entry(…)` for others."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tf.addfile(member)
                continue
            info = tarfile.TarInfo(member[0])
            info.size = len(member[1])
            tf.addfile(info, io.BytesIO(member[1]))


def _entry(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def test_a_second_sample_under_the_same_member_names_gets_a_row(tmp_path):
    tar = tmp_path / "dupes.tar"
    _tar(tar, [("ok.jpg", jpeg_bytes()), ("ok.txt", b"fine"),
               ("dupe.jpg", jpeg_bytes(seed=1)), ("dupe.txt", b"first dupe"),
               ("dupe.jpg", jpeg_bytes(seed=2)), ("dupe.txt", b"second dupe"),
               ("dir/x.jpg", jpeg_bytes(seed=3)), ("dir/x.txt", b"x"), ("dir/x.txt", b"x again")])
    rows = _rows([tar])
    reasons = [(r["source"].split("::")[1], r["reason"]) for r in rows]
    assert reasons == [("ok.jpg", None), ("dupe.jpg", None), ("dir/x.jpg", None),
                       ("dupe.jpg", "duplicate_member:dupe.jpg, dupe.txt"), ("dir/x.txt", "duplicate_member:dir/x.txt")]
    assert rows[1]["text"] == "first dupe"  # the first of two members is the one read


def test_a_key_that_comes_back_late_is_a_sample_with_its_own_key(tmp_path):
    from pipelines.codec import GROUP_WINDOW

    members = [("k.jpg", jpeg_bytes()), ("k.txt", b"first k")]
    for i in range(GROUP_WINDOW + 2):
        members += [(f"o{i}.jpg", jpeg_bytes(seed=i)), (f"o{i}.txt", b"other")]
    members += [("k.jpg", jpeg_bytes(seed=99)), ("k.txt", b"second k")]
    _tar(tmp_path / "late.tar", members)
    rows = _rows([tmp_path / "late.tar"], dataset="d")
    assert len(rows) == GROUP_WINDOW + 4 and all(r["keep"] for r in rows)
    ks = [r for r in rows if r["source"].endswith("::k.jpg")]
    assert [r["text"] for r in ks] == ["first k", "second k"]
    assert [r["key"] for r in ks] == [make_key("d", "late.tar::k"), make_key("d", "late.tar::k.2")]


def test_links_devices_and_folders_named_like_images_in_a_tar(tmp_path):
    tar = tmp_path / "odd.tar"
    _tar(tar, [("ok.jpg", jpeg_bytes()), ("ok.txt", b"fine"),
               _entry("lnk.jpg", tarfile.SYMTYPE, "/etc/passwd"), ("lnk.txt", b"symlink member"),
               _entry("hard.jpg", tarfile.LNKTYPE, "ok.jpg"), ("hard.txt", b"hardlink member"),
               _entry("dev.jpg", tarfile.CHRTYPE), ("dev.txt", b"device member"),
               _entry("adir.jpg", tarfile.DIRTYPE), ("adir.txt", b"a folder named like an image"),
               ("capl.jpg", jpeg_bytes(seed=5)), _entry("capl.txt", tarfile.SYMTYPE, "ok.txt"),
               _entry("alone.png", tarfile.SYMTYPE, "ok.jpg"),  # no regular member beside it
               _entry("emptydir.jpg", tarfile.DIRTYPE),  # a folder alone is structure, not a sample
               ("multi.dot.name.jpg", jpeg_bytes(seed=6)), ("multi.dot.name.txt", b"keys end at the first dot")])
    got = {r["source"].split("::")[1]: r["reason"] or "ok" for r in _rows([tar])}
    assert got == {
        "ok.jpg": "ok",
        "lnk.jpg": "not_a_regular_member:lnk.jpg (symbolic link)",
        "hard.jpg": "not_a_regular_member:hard.jpg (hard link)",
        "dev.jpg": "not_a_regular_member:dev.jpg (character device)",
        "adir.jpg": "not_a_regular_member:adir.jpg (folder)",
        "capl.jpg": "not_a_regular_member:capl.txt (symbolic link)",
        "alone.png": "not_a_regular_member:alone.png (symbolic link)",
        "multi.dot.name.jpg": "image_missing",  # webdataset's convention: key `multi`, extension `dot.name.jpg`
    }


def test_a_tar_of_only_links_is_not_reported_empty(tmp_path):
    _tar(tmp_path / "links.tar", [_entry("a.jpg", tarfile.SYMTYPE, "b.jpg")])
    assert [r["reason"] for r in _rows([tmp_path / "links.tar"])] == ["not_a_regular_member:a.jpg (symbolic link)"]


def test_garbage_shorter_than_a_tar_header_is_not_called_truncated(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "garbage.tar.gz").write_bytes(b"not gzip at all")
    (shards / "garbage.tar").write_bytes(b"not a tar")
    (shards / "big.tar").write_bytes(b"\x01garbage" * 100)
    with tarfile.open(shards / "zero.tar", "w"):
        pass
    (shards / "empty.tar").write_bytes(b"")
    assert _by_source(_rows([shards]), shards) == {
        "garbage.tar.gz": "tar_broken:not a gzip file, nor a tar archive (15 bytes)",
        "garbage.tar": "tar_broken:not a tar archive (9 bytes, less than one tar header)",
        "big.tar": "tar_broken:not a tar archive",  # as before
        "zero.tar": "tar_empty", "empty.tar": "tar_empty",
    }


# ---------------------------------------------------------------- Parquet


def test_an_unusable_parquet_file_in_a_folder_is_one_error_row(tmp_path):
    src = tmp_path / "tables"
    src.mkdir()
    (src / "broken.parquet").write_bytes(b"PAR1garbagePAR1")
    pq.write_table(pa.table({"foo": [1], "bar": ["x"]}), src / "nocols.parquet")
    pq.write_table(pa.table({"image": [jpeg_bytes(), png_bytes()], "text": ["a", "b"]}), src / "good.parquet")
    pq.write_table(pa.table({"image": pa.array([], pa.binary()), "text": pa.array([], pa.string())}),
                   src / "empty.parquet")  # no rows: no row in the ledger, as before
    got = _by_source(_rows([src]), src)
    assert got.pop("good.parquet#row=0") == got.pop("good.parquet#row=1") == "ok"
    assert got.pop("broken.parquet").startswith("parquet_broken:")
    assert got == {"nocols.parquet": "parquet_columns_missing:cannot find the image column among foo, bar; "
                                     "set reader.image_column"}
    # A wrong reader.image_column leaves no file readable: the run stops before it starts.
    with pytest.raises(InputError, match="no column 'pixels' for the image"):
        _rows([src], image_column="pixels")


@pytest.mark.parametrize("name", ["broken.parquet", "nocols.parquet"])
def test_an_unusable_parquet_file_given_alone_stops_the_run(tmp_path, name):
    (tmp_path / "broken.parquet").write_bytes(b"PAR1garbagePAR1")
    pq.write_table(pa.table({"foo": [1], "bar": ["x"]}), tmp_path / "nocols.parquet")
    with pytest.raises(InputError, match=name):
        _rows([tmp_path / name])
    only = tmp_path / "only"
    only.mkdir()
    os.rename(tmp_path / name, only / name)
    with pytest.raises(InputError, match=name):  # a folder none of whose files can be read: the same
        _rows([only])


def test_a_corrupt_page_makes_error_rows_of_the_rows_not_read(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"image": [jpeg_bytes(seed=i) for i in range(6)], "text": [f"c{i}" for i in range(6)]}),
                   path, row_group_size=3)
    data = bytearray(path.read_bytes())
    start = pq.ParquetFile(path).metadata.row_group(1).column(0).data_page_offset
    data[start + 5 : start + 60] = bytes(b ^ 0xFF for b in data[start + 5 : start + 60])
    path.write_bytes(bytes(data))
    rows = _rows([path], batch_size=3)
    assert [r["source"].rsplit("#", 1)[1] for r in rows] == [f"row={i}" for i in range(6)]
    assert [r["keep"] for r in rows] == [True] * 3 + [False] * 3
    assert all(r["reason"].startswith("parquet_broken:") for r in rows[3:])


def test_parquet_extra_columns_of_any_type_go_to_meta_binary_included(tmp_path):
    pq.write_table(pa.table({"image": [jpeg_bytes()], "text": ["t"], "blob": [b"\x00\x01"], "n": [3]}),
                   tmp_path / "t.parquet")
    (row,) = _rows([tmp_path / "t.parquet"])
    assert json.loads(row["meta"]) == {"blob": {"base64": "AAE="}, "n": 3}


def test_a_parquet_id_column_that_does_not_exist_is_named(tmp_path):
    pq.write_table(pa.table({"image": [jpeg_bytes()], "text": ["t"]}), tmp_path / "t.parquet")
    with pytest.raises(InputError, match="no column 'uid' for the row id"):
        _rows([tmp_path / "t.parquet"], id_column="uid")


# ---------------------------------------------------------------- image kinds


def test_avif_is_an_image_when_pillow_reads_it():
    assert (".avif" in IMAGE_EXTENSIONS) == features.check("avif")


def test_images_of_kinds_the_readers_do_not_take_are_named(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (16, 16), "red").save(src / "icon.ico")
    (src / "icon.txt").write_text("an icon")
    (src / "notes.csv").write_text("a,b")  # not an image: ignored as before
    (src / "notes.txt").write_text("a caption with no image")
    if features.check("avif"):
        Image.new("RGB", (16, 16), "blue").save(src / "pic.avif")
        (src / "pic.txt").write_text("an avif picture")
    _pair(src, "ok")
    got = _by_source(_rows([src]), src)
    assert got.pop("icon.ico") == "image_extension_unsupported:icon.ico"
    assert got.pop("notes.txt") == "image_missing"
    assert got.pop("pic.avif", "ok") == "ok"
    assert got == {"ok.jpg": "ok"}
    ico = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(ico, format="ICO")
    _tar(tmp_path / "x.tar", [("icon.ico", ico.getvalue()), ("icon.txt", b"an icon")])
    assert [r["reason"] for r in _rows([tmp_path / "x.tar"])] == ["image_extension_unsupported:icon.ico"]


def test_member_notes_follow_pax_names_gzip_and_truncation(tmp_path):
    import gzip

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in [("ünï cødé.jpg", jpeg_bytes()), ("ünï cødé.txt", b"first"), ("ünï cødé.txt", b"again"),
                           ("d/" + "long" * 40 + ".jpg", jpeg_bytes(seed=1)), ("d/" + "long" * 40 + ".txt", b"long")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        tf.addfile(_entry("ßym.jpg", tarfile.SYMTYPE, "ünï cødé.jpg"))
    (tmp_path / "pax.tar.gz").write_bytes(gzip.compress(buf.getvalue()))
    got = [(r["source"].split("::")[1], r["reason"]) for r in _rows([tmp_path / "pax.tar.gz"])]
    assert got == [("ünï cødé.jpg", None), ("d/" + "long" * 40 + ".jpg", None),
                   ("ünï cødé.txt", "duplicate_member:ünï cødé.txt"),
                   ("ßym.jpg", "not_a_regular_member:ßym.jpg (symbolic link)")]
    # Cut inside the second sample's image: the rows are those of before (no duplicate or extra row).
    a, b = jpeg_bytes(), jpeg_bytes(seed=2)
    whole = tar_bytes([("a.jpg", a), ("a.txt", b"a"), ("b.jpg", b), ("b.txt", b"b")])
    (tmp_path / "cut.tar").write_bytes(whole[: 512 + -(-len(a) // 512) * 512 + 1024 + 512 + 100])
    got = [(r["source"].rsplit("/", 1)[1], (r["reason"] or "ok").split(":")[0]) for r in _rows([tmp_path / "cut.tar"])]
    assert got == [("cut.tar::a.jpg", "ok"), ("cut.tar::b", "tar_truncated"), ("cut.tar", "tar_broken")]


