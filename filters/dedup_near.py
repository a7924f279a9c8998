"""Near-duplicate images by perceptual hash: pHash, candidates by LSH banding, Hamming distance to verify.

With `crops` on, a copy cut from another image (a few percent off its borders) is found too. pHash alone
misses most crops: the cut shifts and rescales every low frequency. So each image also hashes a grid of its own
crops (`crop_scales` × 3×3 positions). The crop hashes probe the LSH bands of the whole-view hashes (never each
other); a pair whose whole-view hash lies within `crop_hamming_threshold` of one of the other's crop hashes is a
candidate, and a candidate is a duplicate when one image, scaled into the other (aspect-consistent scales down to
`crop_min_keep`, every offset), correlates at ≥ `crop_min_correlation` (OpenCV template matching on small JPEG
thumbnails that travel with the keys).

Cost: every row goes to about a hundred LSH buckets with its thumbnail (2-3 kB at 64 px), the map hashes 28
views, and candidate pairs grow with the square of the input (16-bit bands). Meant for runs of up to about 10⁵
images; beyond that, `semantic_dedup` on real CLIP embeddings is the scalable way to catch crops.
"""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Callable
from functools import cached_property, lru_cache
from typing import Any, ClassVar

import imagehash
import numpy as np
import pyarrow as pa
from PIL import Image
from pydantic import Field

from pipelines.columns import working
from pipelines.global_stage import DedupOperator
from pipelines.imaging import decode_rgb, views
from pipelines.operator import OperatorConfig
from pipelines.schema import set_columns

HASH_BITS = 64
_GRID = (0.0, 0.5, 1.0)  # crop positions along each axis: start, centre, end
_MEMO = 50_000  # pair verdicts, parsed grids, decoded thumbnails a reduce worker remembers at most (each)
_HASH_SIDE = 256  # grid hashes are taken on a grayscale copy this large at most (pHash itself looks at 32×32)
_SIDE = 32  # pHash's view of an image: 32×32


class NearDedupConfig(OperatorConfig):
    hamming_threshold: int = Field(4, ge=0, le=32, description="Two images whose 64-bit pHashes differ in at most this many bits are near-duplicates.")
    bands: int | None = Field(
        None, ge=1, le=64,
        description="LSH bands the pHash is cut into; candidates share a band. None: threshold+1, which finds every "
        "pair within the threshold (pigeonhole); fewer bands cost less and may miss some.",
    )
    crops: bool = Field(False, description="Also find copies cut from another image (candidates by crop hashes, "
                                           "verified by aligned correlation). Keys grow by a JPEG thumbnail per row.")
    crop_scales: tuple[float, ...] = Field((0.97, 0.94, 0.91), min_length=1,
                                           description="Side fractions of the crop grid each image hashes (3×3 positions each).")
    crop_hamming_threshold: int = Field(6, ge=0, le=32, description="Full hash vs a crop hash: candidates within this many bits.")
    crop_bands: int | None = Field(
        4, ge=1, le=64,
        description="LSH bands for the crop search. 4 (16 bits each) finds almost every candidate, because a crop is "
        "near several grid hashes; None: crop threshold + 1, every candidate, but short bands pair most images and each "
        "pair costs a check (on the demo stamps: 35× the candidates for one more crop in 150).",
    )
    crop_min_correlation: float = Field(0.96, gt=0.0, le=1.0, description="A candidate is a crop when aligned thumbnails correlate at least this much.")
    crop_min_keep: float = Field(0.8, gt=0.0, le=1.0, description="Smallest side fraction a crop may keep.")
    thumbnail: int = Field(64, ge=16, le=256, description="Side of the RGB thumbnail the crop check aligns.")


def grid_hashes(gray: np.ndarray, scales: tuple[float, ...]) -> np.ndarray:
    """pHashes (as uint64) of the whole grayscale image, then of its crops at each scale, at the start, centre and
    end of both axes. One resize (OpenCV, area) per view and one batched DCT: the same steps as pHash, for many views
    at once. Hashes of this function are compared with each other only, never with `imagehash`'s."""
    from scipy.fft import dct

    h, w = gray.shape
    frame = gray.T.astype(np.float32)  # [w, h]: a column of the image is a contiguous row here
    crops = [(max(1, round(w * k)), max(1, round(h * k))) for k in scales]
    grids = [(cw, ch, [round((w - cw) * f) for f in _GRID], [round((h - ch) * f) for f in _GRID]) for cw, ch in crops]
    groups = [(w, h, [0], [0]), *grids]
    replayed = [g for g in grids if _general_area(g[0]) and _general_area(g[1])]
    done = dict(zip(map(id, replayed), _area_views(frame, replayed), strict=True)) if replayed else {}
    if _general_area(w) and _general_area(h):
        done[id(groups[0])] = _area_views(frame, groups[:1])[0]
    views = [done[id(g)] if id(g) in done else _opencv_views(gray, *g) for g in groups]
    pixels = np.concatenate(views).astype(np.float64)
    low = dct(dct(pixels, axis=1), axis=2)[:, :8, :8].reshape(len(pixels), 64)
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def _opencv_views(gray: np.ndarray, cw: int, ch: int, xs: list[int], ys: list[int]) -> np.ndarray:
    """`cv2.resize(gray[y:y+ch, x:x+cw], (32, 32), INTER_AREA)` for every x in xs (outer) and y in ys (inner)."""
    import cv2

    return np.stack([cv2.resize(gray[y : y + ch, x : x + cw], (_SIDE, _SIDE), interpolation=cv2.INTER_AREA)
                     for x in xs for y in ys])


def _area_views(frame: np.ndarray, groups: list[tuple[int, int, list[int], list[int]]]) -> list[np.ndarray]:
    """`_opencv_views` of each group (cw, ch, xs, ys: crops of one size; the same number of xs and of ys in every
    group) of the picture whose transpose is `frame` ([w, h] float32), for groups where OpenCV takes its general
    area path (both sides shrink by a non-integer factor). OpenCV's arithmetic is replayed for all crops at once,
    sharing each source row's horizontal pass among the crops that contain it: the same float32 products and sums
    in the same order, hence the same bytes (tests compare them), at a fraction of one OpenCV call per crop."""
    n, nx, ny = len(groups), len(groups[0][2]), len(groups[0][3])
    xi, xw = _stacked_tabs([(cw, tuple(xs)) for cw, _, xs, _ in groups])  # [n, nx, 32, taps]
    yi, yw = _stacked_tabs([(ch, tuple(ys)) for _, ch, _, ys in groups])  # [n, ny, 32, taps]
    rows_pass = np.zeros((n, nx, _SIDE, frame.shape[1]), np.float32)  # each source row, shrunk: [n, nx, 32, h]
    for t in range(xi.shape[-1]):  # buf[d] += S[s]·α, tap by tap: OpenCV's order (a padding tap adds 0·S = 0)
        rows_pass += frame[xi[..., t]] * xw[..., t, None]
    by_row = np.ascontiguousarray(rows_pass.transpose(3, 0, 1, 2))  # [h, n, nx, 32]
    group = np.arange(n)[:, None, None]
    acc = np.zeros((n, ny, _SIDE, nx, _SIDE), np.float32)
    for t in range(yi.shape[-1]):  # sum += β·buf, row by row
        acc += yw[..., t, None, None] * by_row[yi[..., t], group]
    out = np.rint(acc).clip(0, 255).astype(np.uint8)  # OpenCV rounds half to even too
    return list(out.transpose(0, 3, 1, 2, 4).reshape(n, nx * ny, _SIDE, _SIDE))


def _stacked_tabs(sizes: list[tuple[int, tuple[int, ...]]]) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights [groups, offsets, 32, taps] of `_area_tab(size)` shifted by each offset; groups
    with fewer taps are padded with weight 0."""
    tabs = [_area_tab(size) for size, _ in sizes]
    taps = max(i.shape[1] for i, _ in tabs)
    index = np.zeros((len(sizes), len(sizes[0][1]), _SIDE, taps), np.intp)
    weight = np.zeros(index.shape, np.float32)
    for g, ((_, offsets), (i, w)) in enumerate(zip(sizes, tabs, strict=True)):
        index[g, :, :, : i.shape[1]] = np.asarray(offsets)[:, None, None] + i
        weight[g, :, :, : i.shape[1]] = w
    return index, weight


def _general_area(size: int) -> bool:
    """OpenCV shrinks `size` → 32 with its general area code (not upscaling, not an integer factor)."""
    scale = 1.0 / (_SIDE / size)
    return scale >= 1 and abs(scale - round(scale)) >= sys.float_info.epsilon


@lru_cache(maxsize=1024)
def _area_tab(size: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's area weights for `size` → 32 (computeResizeAreaTab) as [32, taps] source offsets and float32 weights,
    in OpenCV's order of summation; unused taps weigh 0 (adding 0.0 leaves a float sum as it is)."""
    scale = 1.0 / (_SIDE / size)
    taps: list[list[tuple[int, float]]] = []
    for d in range(_SIDE):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, size - f1)
        s2 = min(math.floor(f2), size - 1)
        s1 = min(math.ceil(f1), s2)
        row = [(s1 - 1, (s1 - f1) / cell)] if s1 - f1 > 1e-3 else []
        row += [(s, 1.0 / cell) for s in range(s1, s2)]
        if f2 - s2 > 1e-3:
            row.append((s2, min(f2 - s2, 1.0, cell) / cell))
        taps.append(row)
    index = np.zeros((_SIDE, max(map(len, taps))), np.intp)
    weight = np.zeros(index.shape, np.float32)
    for d, row in enumerate(taps):
        for k, (s, a) in enumerate(row):
            index[d, k], weight[d, k] = s, a
    return index, weight


class NearDedup(DedupOperator):
    """Survivor of a near-duplicate pair: the higher CLIP score (when scored), then the smaller key."""

    name = "near_dedup"
    Config = NearDedupConfig
    order_columns: ClassVar[tuple[tuple[str, bool], ...]] = (("clip_score", True),)

    @property
    def key_columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("phash", "phash_crops", "thumbnail", "aspect") if self.config.crops else ("phash",)

    @property
    def adds(self) -> tuple[pa.Field, ...]:  # type: ignore[override]
        phash = pa.field("phash", pa.string())
        if not self.config.crops:
            return (phash,)
        # The crop search's columns only the reduce needs: never written into a sample.
        return (phash, working(pa.field("phash_crops", pa.list_(pa.string()))),
                working(pa.field("thumbnail", pa.binary())), working(pa.field("aspect", pa.float32())))

    reads = ("image",)

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        cols: dict[str, list] = {name: [] for name in self.key_columns}
        pictures = views()  # decoded once per pass, shared with the pass's other stages
        for data in batch.column("image").to_pylist():
            try:
                values = self._keys(pictures.rgb(data))
            except Exception:  # noqa: BLE001 - no hash, no near-duplicate search; decode already vetted the bytes
                values = dict.fromkeys(cols)
            for name in cols:
                cols[name].append(values[name])
        return set_columns(batch, cols)

    def _keys(self, img: Image.Image) -> dict[str, Any]:
        gray = img.convert("L")  # one grayscale copy for pHash and the crop grid
        out: dict[str, Any] = {"phash": str(imagehash.phash(gray))}  # phash converts to L first: same hash
        if self.config.crops:
            gray.thumbnail((_HASH_SIDE, _HASH_SIDE))  # in place: pHash is done with it
            hashes = grid_hashes(np.asarray(gray), self.config.crop_scales)
            out["phash_crops"] = [format(int(v), "016x") for v in hashes]  # [whole image, crops...]
            side = self.config.thumbnail
            thumb = img.resize((side, side), Image.Resampling.BOX)
            buf = io.BytesIO()
            thumb.save(buf, format="JPEG", quality=90)  # a third of the raw bytes: the row travels to ~100 buckets
            out["thumbnail"] = buf.getvalue()
            out["aspect"] = img.width / img.height
        return out

    # --- reduce ------------------------------------------------------------------------------------------

    @staticmethod
    def _edges(threshold: int, bands: int | None) -> list[tuple[int, int]]:
        bands = bands or min(HASH_BITS, threshold + 1)
        edges = [round(i * HASH_BITS / bands) for i in range(bands + 1)]
        return list(zip(edges[:-1], edges[1:], strict=True))

    def _band_edges(self) -> list[tuple[int, int]]:
        return self._edges(self.config.hamming_threshold, self.config.bands)

    def _bands(self, prefix: str, edges: list[tuple[int, int]], value: str) -> list[str]:
        bits = format(int(value, 16), f"0{HASH_BITS}b")
        return [f"{prefix}{i}:{bits[a:b]}" for i, (a, b) in enumerate(edges)]

    def _crop_edges(self) -> list[tuple[int, int]]:
        return self._edges(self.config.crop_hamming_threshold, self.config.crop_bands)

    def buckets(self, keys: pa.RecordBatch, state: Any) -> list[list[str]]:
        """pHash bands ("p…"); with crops, also the bands of the whole-view grid hash ("c…", another hash space)."""
        edges = self._band_edges()
        out = [self._bands("p", edges, h) for h in keys.column("phash").to_pylist()]
        if self.config.crops:
            crop_edges = self._crop_edges()
            for found, grid in zip(out, keys.column("phash_crops").to_pylist(), strict=True):
                found.extend(self._bands("c", crop_edges, grid[0]))
        return out

    def probes(self, keys: pa.RecordBatch, state: Any) -> list[list[str]] | None:
        """With crops: each crop hash probes the whole-view bands, looking for an image it was cut from."""
        if not self.config.crops:
            return None
        edges = self._crop_edges()
        return [sorted({b for h in grid[1:] for b in self._bands("c", edges, h)})
                for grid in keys.column("phash_crops").to_pylist()]

    def matches(self, a: dict[str, Any], b: dict[str, Any], state: Any) -> bool:
        if (int(a["phash"], 16) ^ int(b["phash"], 16)).bit_count() <= self.config.hamming_threshold:
            return True
        if not self.config.crops:
            return False
        # a pair meets again in every band it shares
        return self._remember("verdicts", (a["key"], b["key"]), lambda: self._crop_match(a, b))

    def _crop_match(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        """One image's whole-view hash near one of the other's crop hashes, confirmed by aligned thumbnails."""
        ga, gb, t = self._grid(a), self._grid(b), self.config.crop_hamming_threshold
        near = min(np.bitwise_count(gb[1:] ^ ga[0]).min(), np.bitwise_count(ga[1:] ^ gb[0]).min()) <= t
        return bool(near) and self.crop_correlation(a, b) >= self.config.crop_min_correlation

    def _grid(self, row: dict[str, Any]) -> np.ndarray:
        return self._remember("grids", row["key"], lambda: np.array([int(h, 16) for h in row["phash_crops"]], dtype=np.uint64))

    @cached_property
    def _memo(self) -> dict[str, dict]:
        return {"verdicts": {}, "grids": {}, "thumbs": {}}

    def _remember(self, store: str, key: Any, make: Callable[[], Any]) -> Any:
        """Per-worker memo of reduce work, emptied when it grows past `_MEMO` entries."""
        memo = self._memo[store]
        if key not in memo:
            if len(memo) >= _MEMO:
                memo.clear()
            memo[key] = make()
        return memo[key]

    @cached_property
    def _keeps(self) -> np.ndarray:
        return np.arange(self.config.crop_min_keep, 1.0 + 1e-9, 0.01)

    def _thumb(self, row: dict[str, Any]) -> np.ndarray:
        import cv2

        def load() -> np.ndarray:
            rgb = np.asarray(decode_rgb(row["thumbnail"]), dtype=np.float32)
            return cv2.GaussianBlur(rgb, (0, 0), self.config.thumbnail / 64)  # forgives a coarse search's misalignment

        return self._remember("thumbs", row["key"], load)

    def crop_correlation(self, a: dict[str, Any], b: dict[str, Any]) -> float:
        """Best normalised correlation of either thumbnail scaled into the other (the crop's place found by search)."""
        ta, tb = self._thumb(a), self._thumb(b)
        return max(self._inside(ta, a["aspect"], tb, b["aspect"]), self._inside(tb, b["aspect"], ta, a["aspect"]))

    def _inside(self, big: np.ndarray, big_aspect: float, small: np.ndarray, small_aspect: float) -> float:
        """Is `small` a crop of `big`? Side fractions kx, ky of the crop are tied by the two aspect ratios."""
        import cv2

        side, lo, best = self.config.thumbnail, self.config.crop_min_keep, -1.0
        for kx in self._keeps:
            ky = kx * big_aspect / small_aspect
            if not lo <= ky <= 1.0 + 1e-9:
                continue
            template = cv2.resize(small, (max(1, round(side * kx)), max(1, round(side * ky))), interpolation=cv2.INTER_AREA)
            if template.std() < 1.0:  # a flat template correlates with anything
                continue
            best = max(best, float(cv2.matchTemplate(big, template, cv2.TM_CCOEFF_NORMED).max()))
        return best

    def drop_reason(self, survivor_key: str) -> str:
        return f"near_duplicate:{survivor_key}"
