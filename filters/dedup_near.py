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
from collections.abc import Callable, Iterator
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
_MEMO = 50_000  # pair verdicts and parsed grids a reduce worker remembers at most (each)
_PICTURES = 2_000  # blurred thumbnails, and scaled ones, a reduce worker remembers at most (each: up to 48 kB
# of float32 pixels apiece, so ~200 MB in all)
_GRID_SIDE = 128  # grid hashes look at a 128×128 area average of the grayscale picture (64 gave 2 more bits of
# difference from the exact 256-px grid on the demo stamps and paired two distinct letters; 128 finds what 256 did)
_SIDE = 32  # pHash's view of an image: 32×32
_CHUNK = 8  # pictures whose grid products run together (8 of 128×128 stay in a core's cache)


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
    """64-bit hashes (uint64) of the whole grayscale picture, then of its crops at each scale (a fraction of each
    axis), at the start, centre and end of both axes (x outer, y inner). Each is pHash's rule on the exact 32×32
    area average of its view: the 8×8 lowest DCT-II frequencies above their median. With A a view's area-average
    operator along an axis and D the 8 lowest rows of the 32-point DCT-II, a view's 8×8 block is (D·A_y)·G·(D·A_x)ᵀ,
    so every view of one size comes from two small matrix products. `gray` is [h, w] or a stack [..., h, w] of
    pictures of one size (a batch hashes in one go): [1 + 9·len(scales)] hashes per picture. Hashes of this function
    are compared with each other only, never with `imagehash`'s."""
    h, w = gray.shape[-2:]
    stack = gray.reshape(-1, h, w)
    operators = list(zip(_view_operators(h, scales), _view_operators(w, scales), strict=True))
    low = np.empty((len(stack), sum(len(down) * len(across) // 64 for down, across in operators), 64))  # [n, views, 64]
    for start in range(0, len(stack), _CHUNK):
        pictures = stack[start:start + _CHUNK].astype(np.float64)
        view = 0
        for down, across in operators:
            # [m, ny·8, nx·8]: every (y, x) view of this size. One BLAS call per picture each, all under OpenBLAS's
            # threading threshold (its threads would spin on a loaded machine and cost more CPU than they save).
            blocks = np.matmul(np.matmul(down, pictures), across.T)
            ny, nx = len(down) // 8, len(across) // 8
            low[start:start + len(pictures), view:view + nx * ny] = (
                blocks.reshape(-1, ny, 8, nx, 8).transpose(0, 3, 1, 2, 4).reshape(-1, nx * ny, 64))
            view += nx * ny
    # Rounded so that float noise (a flat view's AC terms come out ~1e-10, not 0) cannot decide a bit.
    low = np.round(low, 4)
    middle = np.partition(low, (31, 32), axis=-1)[..., 31:33]
    bits = low > (middle[..., :1] + middle[..., 1:]) / 2  # the median of 64 values (np.median's value, a sixth of its cost)
    hashes = np.packbits(bits, axis=-1).view(">u8")[..., 0].astype(np.uint64)  # [n, views]
    return hashes.reshape(*gray.shape[:-2], hashes.shape[-1])


def hex_hashes(hashes: np.ndarray) -> list[list[str]]:
    """[n, k] uint64 hashes → n lists of k 16-digit hex strings (as `format(v, "016x")`), in one conversion."""
    n, k = hashes.shape
    digits = hashes.astype(">u8").tobytes().hex()
    return [[digits[(i * k + j) * 16:(i * k + j + 1) * 16] for j in range(k)] for i in range(n)]


_JPEG_SETTINGS: dict[tuple[str, int], tuple | None] = {}  # (mode, quality) → encoder arguments save() used, or None


def jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    """The bytes of `img.save(buf, format="JPEG", quality=quality)`. For a 64-px thumbnail save() spends as long on
    bookkeeping as libjpeg on encoding, so the encoder arguments save() chose for the first picture of a mode and
    quality are reused through Pillow's `tobytes` encoder interface, once they gave save()'s very bytes for that
    picture (else save() it stays). A picture carrying a JPEG comment (save() writes it) always goes through save()."""
    key = (img.mode, quality)
    settings = None if "comment" in img.info else _JPEG_SETTINGS.get(key, ())
    if settings:
        return img.tobytes("jpeg", settings)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    data = buf.getvalue()
    if settings == ():  # first picture of this kind: may save()'s arguments be replayed?
        settings = (img.mode, *getattr(img, "encoderconfig", ()))  # the raw mode, then JpegImagePlugin's arguments
        try:
            same = img.tobytes("jpeg", settings) == data
        except Exception:  # noqa: BLE001 - another Pillow: keep save()
            same = False
        _JPEG_SETTINGS[key] = settings if same else None
    return data


_DCT8 = np.cos(np.pi * np.arange(8)[:, None] * (2 * np.arange(_SIDE)[None, :] + 1) / (2 * _SIDE))  # [8, 32] DCT-II


@lru_cache(maxsize=256)
def _view_operators(size: int, scales: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """D·A along an axis of `size` pixels for the whole axis, then for each scale's three positions (start, centre,
    end): [8 · positions, size] float64 each. A [32, size] averages the view's 32 equal cells, a pixel cut by a
    cell's border counting with the part inside the cell (an exact area resize)."""
    pixel = np.arange(size, dtype=np.float64)[None, :]
    operators = []
    for k, places in ((1.0, (0.0,)), *((k, _GRID) for k in scales)):
        cell = k * size / _SIDE
        rows = []
        for f in places:
            start = (1.0 - k) * size * f + cell * np.arange(_SIDE, dtype=np.float64)[:, None]  # [32, 1]
            inside = np.clip(np.minimum(pixel + 1, start + cell) - np.maximum(pixel, start), 0.0, None)
            rows.append(_DCT8 @ (inside / cell))
        operators.append(np.concatenate(rows))
    return tuple(operators)


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
        pictures = views()  # decoded once per pass, shared with the pass's other stages
        found = []
        for data in batch.column("image").to_pylist():
            try:
                found.append(self._keys(pictures.rgb(data)))
            except Exception:  # noqa: BLE001 - no hash, no near-duplicate search; decode already vetted the bytes
                found.append(None)
        cols: dict[str, list] = {"phash": [k and k["phash"] for k in found]}
        if self.config.crops:
            hashed = [k for k in found if k]
            grids = iter(hex_hashes(grid_hashes(np.stack([k["gray"] for k in hashed]), self.config.crop_scales))
                         if hashed else ())
            cols["phash_crops"] = [k and next(grids) for k in found]  # [whole image, crops...]
            cols["thumbnail"] = [k and k["thumbnail"] for k in found]
            cols["aspect"] = [k and k["aspect"] for k in found]
        return set_columns(batch, cols)

    def _keys(self, img: Image.Image) -> dict[str, Any]:
        """A row's pHash; with crops also what its crop hashes see (the 128-px gray, hashed per batch), its JPEG
        thumbnail and its aspect ratio."""
        gray = img.convert("L")  # one grayscale copy for pHash and the crop grid
        out: dict[str, Any] = {"phash": str(imagehash.phash(gray))}  # phash converts to L first: same hash
        if self.config.crops:
            # views sit at fractions of each axis
            out["gray"] = np.asarray(gray.resize((_GRID_SIDE, _GRID_SIDE), Image.Resampling.BOX))
            side = self.config.thumbnail
            thumb = img.resize((side, side), Image.Resampling.BOX)
            out["thumbnail"] = jpeg_bytes(thumb, 90)  # a third of the raw bytes: the row travels to ~100 buckets
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
        # The verdict of `crop_correlation(a, b) >= crop_min_correlation`, stopping at the first size that reaches it.
        return bool(near) and any(score >= self.config.crop_min_correlation for score in self._scores(a, b))

    def _grid(self, row: dict[str, Any]) -> np.ndarray:
        return self._remember("grids", row["key"], lambda: np.array([int(h, 16) for h in row["phash_crops"]], dtype=np.uint64))

    @cached_property
    def _memo(self) -> dict[str, dict]:
        return {"verdicts": {}, "grids": {}, "thumbs": {}, "templates": {}}

    def _remember(self, store: str, key: Any, make: Callable[[], Any], limit: int = _MEMO) -> Any:
        """Per-worker memo of reduce work, emptied when it grows past `limit` entries."""
        memo = self._memo[store]
        if key not in memo:
            if len(memo) >= limit:
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

        return self._remember("thumbs", row["key"], load, limit=_PICTURES)

    def crop_correlation(self, a: dict[str, Any], b: dict[str, Any]) -> float:
        """Best normalised correlation of either thumbnail scaled into the other (the crop's place found by search)."""
        return max(self._scores(a, b), default=-1.0)

    def _scores(self, a: dict[str, Any], b: dict[str, Any]) -> Iterator[float]:
        """Best correlation of each crop size of b inside a, then of a inside b, computed as they are asked for."""
        import cv2

        for big, small in ((a, b), (b, a)):
            thumb = self._thumb(big)
            for size in self._sizes(big["aspect"], small["aspect"]):
                template = self._template(small, size)
                if template is not None:
                    yield float(cv2.matchTemplate(thumb, template, cv2.TM_CCOEFF_NORMED).max())

    def _sizes(self, big_aspect: float, small_aspect: float) -> list[tuple[int, int]]:
        """Is `small` a crop of `big`? The crop's (width, height) in thumbnail pixels for each side fraction kx it may
        keep, ky tied to kx by the two aspect ratios. Fractions that round to one size are one check (same template,
        same score)."""
        side, lo, sizes = self.config.thumbnail, self.config.crop_min_keep, {}
        for kx in self._keeps:
            ky = kx * big_aspect / small_aspect
            if lo <= ky <= 1.0 + 1e-9:
                sizes.setdefault((max(1, round(side * kx)), max(1, round(side * ky))), None)
        return list(sizes)

    def _template(self, row: dict[str, Any], size: tuple[int, int]) -> np.ndarray | None:
        """The row's thumbnail scaled to `size`; None when it is flat (a flat template correlates with anything)."""
        import cv2

        def make() -> np.ndarray | None:
            template = cv2.resize(self._thumb(row), size, interpolation=cv2.INTER_AREA)
            return None if template.std() < 1.0 else template

        return self._remember("templates", (row["key"], size), make, limit=_PICTURES)

    def drop_reason(self, survivor_key: str) -> str:
        return f"near_duplicate:{survivor_key}"
