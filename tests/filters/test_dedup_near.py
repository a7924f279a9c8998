import io

import numpy as np
import pyarrow as pa
from PIL import Image, ImageEnhance

from filters.dedup_near import NearDedup
from pipelines.global_stage import dedup_in_process, reduce_rows, reduce_schema
from pipelines.schema import record_schema
from tests.images import png_bytes


def _img(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def _bytes(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _smooth(seed: int) -> bytes:
    """A picture with large-scale structure (pHash looks at low frequencies), not white noise."""
    small = _img(png_bytes((6, 6), seed=seed))
    return _bytes(small.resize((128, 96), Image.Resampling.BICUBIC))


def _reduce(op, rows):
    """The whole dedup reduce in process: buckets → candidates → best survivor per loser."""
    batch = op(pa.RecordBatch.from_pylist(rows, schema=_schema(op)))
    keys = reduce_rows(batch, op, reduce_schema(op, batch.schema))
    return {k: survivor for k, (_, survivor) in dedup_in_process(op, None, [keys]).items()}


def _schema(op):
    return record_schema([*op.adds, pa.field("clip_score", pa.float32())])


def _row(key, data, score=None):
    return {"key": key, "image": data, "text": "t", "source": key, "dataset": "d", "meta": "{}", "part": 0,
            "ord": 0, "keep": True, "error": False, "clip_score": score}


def test_resized_recompressed_and_brightened_copies_lose_to_the_best_scored_original():
    original = _img(_smooth(1))
    rows = [
        _row("a-original", _bytes(original), score=0.9),
        _row("b-resized", _bytes(original.resize((90, 67))), score=0.5),
        _row("c-jpeg", _bytes(original, "JPEG", quality=30), score=0.4),
        _row("d-brighter", _bytes(ImageEnhance.Brightness(original).enhance(1.1)), score=0.95),
        _row("e-other", _smooth(2), score=0.1),
        _row("f-other", _smooth(3), score=0.2),
    ]
    losers = _reduce(NearDedup(hamming_threshold=6), rows)
    # The brighter copy has the highest CLIP score: it is the survivor of its group.
    assert losers == {"a-original": "d-brighter", "b-resized": "d-brighter", "c-jpeg": "d-brighter"}


def test_without_scores_the_smallest_key_survives_and_bands_find_every_pair_within_the_threshold():
    op = NearDedup(hamming_threshold=10)
    assert len(op._band_edges()) == 11
    original = _img(_smooth(4))
    rows = [_row("z", _bytes(original)), _row("m", _bytes(original.resize((100, 75)))), _row("q", _smooth(5))]
    assert _reduce(op, rows) == {"z": "m"}
    pairs = op.matches({"phash": "ffffffffffffffff"}, {"phash": "fffffffffffffc00"}, None)
    assert pairs  # 10 bits apart
    assert not op.matches({"phash": "ffffffffffffffff"}, {"phash": "fffffffffffff800"}, None)


def _crop(img: Image.Image, left: float, top: float, keep_x: float, keep_y: float) -> Image.Image:
    x, y = round(img.width * left), round(img.height * top)
    return img.crop((x, y, x + round(img.width * keep_x), y + round(img.height * keep_y)))


def test_small_crops_are_found_by_crop_hashes_and_aligned_correlation_and_distinct_images_are_spared():
    originals = [_img(_smooth(s)).resize((240, 180), Image.Resampling.BICUBIC) for s in (10, 11, 12)]
    rows = [_row(f"o{i}", _bytes(im), score=0.9) for i, im in enumerate(originals)]
    cuts = [(0.02, 0.05, 0.93, 0.92), (0.06, 0.0, 0.92, 0.95), (0.0, 0.03, 0.96, 0.94)]  # 4-8% off, anywhere
    rows += [_row(f"c{i}", _bytes(_crop(im, *cut)), score=0.5) for i, (im, cut) in enumerate(zip(originals, cuts, strict=True))]
    rows += [_row(f"x{i}", _smooth(s)) for i, s in enumerate((20, 21, 22))]  # distinct pictures

    plain = NearDedup()
    assert [f.name for f in plain.adds] == ["phash"]  # no working columns unless asked
    assert _reduce(plain, [r for r in rows if r["key"][0] in "oc"]) == {}  # pHash alone misses these crops

    op = NearDedup(crops=True)
    assert _reduce(op, rows) == {"c0": "o0", "c1": "o1", "c2": "o2"}
    # The correlation is what tells a crop from a look-alike: a crop of one picture is no duplicate of another.
    keys = op(pa.RecordBatch.from_pylist(rows, schema=_schema(op)))
    as_rows = {r["key"]: r for r in keys.to_pylist()}
    assert op.crop_correlation(as_rows["o0"], as_rows["c0"]) > 0.96
    assert op.crop_correlation(as_rows["o1"], as_rows["c0"]) < 0.9


def _reference_grid(gray: np.ndarray, scales: tuple[float, ...]) -> list[int]:
    """The crop grid's hashes the slow, obvious way: each view's 32×32 exact area average from the picture's
    running sums (linear inside a pixel), scipy's 2-D DCT, the 8×8 lowest frequencies above their median."""
    from scipy.fft import dctn

    h, w = gray.shape
    sums = np.zeros((h + 1, w + 1))
    sums[1:, 1:] = gray.astype(np.float64).cumsum(0).cumsum(1)

    def integral(y: float, x: float) -> float:  # ∫∫ of the picture over [0, y] × [0, x], bilinear between pixels
        i, j = min(int(y), h - 1), min(int(x), w - 1)
        fy, fx = y - i, x - j
        return ((1 - fy) * (1 - fx) * sums[i, j] + fy * (1 - fx) * sums[i + 1, j]
                + (1 - fy) * fx * sums[i, j + 1] + fy * fx * sums[i + 1, j + 1])

    views = [(1.0, 0.0, 0.0)] + [(k, fx, fy) for k in scales for fx in (0.0, 0.5, 1.0) for fy in (0.0, 0.5, 1.0)]
    hashes = []
    for k, fx, fy in views:
        y0, x0, ch, cw = (1 - k) * h * fy, (1 - k) * w * fx, k * h / 32, k * w / 32
        ys, xs = y0 + ch * np.arange(33), x0 + cw * np.arange(33)
        corners = np.array([[integral(y, x) for x in xs] for y in ys])
        view = np.diff(np.diff(corners, axis=0), axis=1) / (ch * cw)
        low = np.round(dctn(view, type=2)[:8, :8] / 4, 4).ravel()  # scipy's DCT-II is 2·Σ per axis
        bits = low > np.median(low)
        hashes.append(int("".join("1" if b else "0" for b in bits), 2))
    return hashes


def test_crop_grid_hashes_are_phash_of_exact_area_averages_of_each_view():
    from filters.dedup_near import grid_hashes

    rng = np.random.default_rng(0)
    scales = (0.97, 0.94, 0.91)
    pictures = [rng.integers(0, 256, (h, w), dtype=np.uint8) for h, w in ((128, 128), (40, 90), (17, 23))]
    pictures.append(np.asarray(_img(_smooth(6)).convert("L").resize((128, 128), Image.Resampling.BOX)))
    pictures.append(np.full((128, 128), 200, np.uint8))  # flat: float noise must not decide its bits
    for gray in pictures:
        got = grid_hashes(gray, scales)
        assert got.dtype == np.uint64 and len(got) == 1 + 9 * len(scales)
        assert [int(v) for v in got] == _reference_grid(gray, scales), gray.shape
    assert int(grid_hashes(pictures[-1], scales)[0]) == 1 << 63  # a flat view: only its mean is above the median


def test_a_batch_of_pictures_hashes_as_each_picture_alone_and_hex_matches_format():
    from filters.dedup_near import grid_hashes, hex_hashes

    rng = np.random.default_rng(1)
    scales = (0.97, 0.94, 0.91)
    stack = rng.integers(0, 256, (11, 128, 128), dtype=np.uint8)  # more than one chunk of products
    together = grid_hashes(stack, scales)
    assert together.shape == (11, 28)
    assert all((together[i] == grid_hashes(stack[i], scales)).all() for i in range(11))
    assert hex_hashes(together) == [[format(int(v), "016x") for v in row] for row in together]


def test_a_row_that_cannot_be_hashed_gets_no_keys_and_its_neighbours_keep_theirs():
    op = NearDedup(crops=True)
    good = [_smooth(30), _smooth(31)]
    rows = [_row("a", good[0]), _row("bad", b"not an image"), _row("b", good[1])]
    out = op(pa.RecordBatch.from_pylist(rows, schema=_schema(op))).to_pylist()
    assert [r["phash"] is None for r in out] == [False, True, False]
    assert out[1]["phash_crops"] is None and out[1]["thumbnail"] is None and out[1]["aspect"] is None
    alone = [op(pa.RecordBatch.from_pylist([_row(k, d)], schema=_schema(op))).to_pylist()[0] for k, d in zip("ab", good, strict=True)]
    for got, want in zip([out[0], out[2]], alone, strict=True):
        assert {k: got[k] for k in ("phash", "phash_crops", "thumbnail", "aspect")} == \
            {k: want[k] for k in ("phash", "phash_crops", "thumbnail", "aspect")}
        assert len(got["phash_crops"]) == 28 and got["phash_crops"][0] != got["phash_crops"][1]


def test_the_crop_check_stops_early_but_gives_the_verdict_of_the_full_search():
    originals = [_img(_smooth(s)).resize((240, 180), Image.Resampling.BICUBIC) for s in (40, 41)]
    pictures = [*originals, _crop(originals[0], 0.03, 0.04, 0.9, 0.93), _crop(originals[1], 0.0, 0.1, 0.85, 0.88),
                _img(_smooth(42)).resize((200, 180), Image.Resampling.BICUBIC)]
    op = NearDedup(crops=True)
    rows = op(pa.RecordBatch.from_pylist([_row(f"r{i}", _bytes(p)) for i, p in enumerate(pictures)],
                                         schema=_schema(op))).to_pylist()
    verdicts = {}
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            score = op.crop_correlation(a, b)
            found = any(s >= op.config.crop_min_correlation for s in NearDedup(crops=True)._scores(a, b))
            assert found == (score >= op.config.crop_min_correlation)
            verdicts[a["key"], b["key"]] = found
    assert verdicts[("r0", "r2")] and verdicts[("r1", "r3")]  # both crops found
    assert not verdicts[("r0", "r1")] and not verdicts[("r2", "r4")]
    # each crop size is searched once, whichever kx values round to it
    sizes = op._sizes(1.0, 1.0)
    assert len(sizes) == len(set(sizes)) and (64, 64) in sizes and len(sizes) < len(op._keeps)


def test_thumbnail_jpeg_bytes_are_exactly_what_save_writes():
    from filters import dedup_near
    from filters.dedup_near import jpeg_bytes

    def saved(img, quality):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        return buf.getvalue()

    rng = np.random.default_rng(2)
    pictures = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((64, 64), (17, 40), (64, 64))]
    pictures.append(_img(_smooth(50)).resize((64, 64), Image.Resampling.BOX))
    pictures.append(pictures[-1].convert("L"))
    commented = _img(_bytes(_img(_smooth(51)), "JPEG", comment=b"a note"))  # save() copies a source's comment
    assert commented.info.get("comment") == b"a note"
    pictures.append(commented.resize((64, 64), Image.Resampling.BOX))
    for quality in (90, 75):
        for img in pictures:
            assert jpeg_bytes(img, quality) == saved(img, quality)
    assert dedup_near._JPEG_SETTINGS[("RGB", 90)]  # the replayed encoder is in use on this Pillow
    assert b"a note" in jpeg_bytes(pictures[-1], 90)
