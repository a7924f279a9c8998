"""Near-duplicate images by perceptual hash: pHash, candidates by LSH banding, Hamming distance to verify.

With `crops` on, a copy cut from another image (a few percent off its borders) is found too. pHash alone
misses most crops: the cut shifts and rescales every low frequency. So each image also hashes a grid of its own
crops (`crop_scales` × 3×3 positions); a pair whose full hash lies within `crop_hamming_threshold` of one of the
other's crop hashes is a candidate, and a candidate is a duplicate when one image, scaled into the other
(aspect-consistent scales down to `crop_min_keep`, every offset), correlates at ≥ `crop_min_correlation`
(OpenCV template matching on small RGB thumbnails that travel with the keys).
"""

from __future__ import annotations

import io
from functools import cached_property
from typing import Any, ClassVar

import imagehash
import numpy as np
import pyarrow as pa
from PIL import Image
from pydantic import Field

from pipelines.global_stage import DedupOperator
from pipelines.imaging import to_rgb
from pipelines.operator import OperatorConfig
from pipelines.schema import set_columns

HASH_BITS = 64
_GRID = (0.0, 0.5, 1.0)  # crop positions along each axis: start, centre, end
_HASH_SIDE = 256  # crop hashes are taken on a copy this large at most (pHash itself looks at 32×32)


class NearDedupConfig(OperatorConfig):
    hamming_threshold: int = Field(4, ge=0, le=32, description="Two images whose 64-bit pHashes differ in at most this many bits are near-duplicates.")
    bands: int | None = Field(
        None, ge=1, le=64,
        description="LSH bands the hash is cut into; candidates share a band. None: threshold+1 (the crop threshold "
        "when crops are on), which finds every pair within the threshold (pigeonhole); fewer bands cost less and may "
        "miss some.",
    )
    crops: bool = Field(False, description="Also find copies cut from another image (candidates by crop hashes, "
                                           "verified by aligned correlation). Keys grow by a thumbnail per row.")
    crop_scales: tuple[float, ...] = Field((0.97, 0.94, 0.91), min_length=1,
                                           description="Side fractions of the crop grid each image hashes (3×3 positions each).")
    crop_hamming_threshold: int = Field(6, ge=0, le=32, description="Full hash vs a crop hash: candidates within this many bits.")
    crop_min_correlation: float = Field(0.96, gt=0.0, le=1.0, description="A candidate is a crop when aligned thumbnails correlate at least this much.")
    crop_min_keep: float = Field(0.8, gt=0.0, le=1.0, description="Smallest side fraction a crop may keep.")
    thumbnail: int = Field(64, ge=16, le=256, description="Side of the RGB thumbnail the crop check aligns.")


def crop_grid(img: Image.Image, scales: tuple[float, ...]) -> list[Image.Image]:
    """The image's crops at each scale, at start, centre and end of both axes."""
    w, h = img.size
    out = []
    for k in scales:
        cw, ch = w * k, h * k
        for fx in _GRID:
            for fy in _GRID:
                x, y = (w - cw) * fx, (h - ch) * fy
                out.append(img.crop((round(x), round(y), round(x + cw), round(y + ch))))
    return out


class NearDedup(DedupOperator):
    """Survivor of a near-duplicate pair: the higher CLIP score (when scored), then the smaller key."""

    name = "near_dedup"
    Config = NearDedupConfig
    order_columns: ClassVar[tuple[tuple[str, bool], ...]] = (("clip_score", True),)

    @property
    def key_columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("phash", "phash_crops", "thumbnail", "aspect") if self.config.crops else ("phash",)

    @property
    def adds(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.key_columns

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        cols: dict[str, list] = {name: [] for name in self.key_columns}
        for data in batch.column("image").to_pylist():
            try:
                values = self._keys(to_rgb(Image.open(io.BytesIO(data))))
            except Exception:  # noqa: BLE001 - no hash, no near-duplicate search; decode already vetted the bytes
                values = dict.fromkeys(cols)
            for name in cols:
                cols[name].append(values[name])
        return set_columns(batch, cols)

    def _keys(self, img: Image.Image) -> dict[str, Any]:
        out: dict[str, Any] = {"phash": str(imagehash.phash(img))}
        if self.config.crops:
            small = img.copy()
            small.thumbnail((_HASH_SIDE, _HASH_SIDE))
            out["phash_crops"] = [str(imagehash.phash(c)) for c in crop_grid(small, self.config.crop_scales)]
            side = self.config.thumbnail
            out["thumbnail"] = img.resize((side, side), Image.Resampling.BOX).tobytes()
            out["aspect"] = img.width / img.height
        return out

    # --- reduce ------------------------------------------------------------------------------------------

    def _band_edges(self) -> list[tuple[int, int]]:
        threshold = max(self.config.hamming_threshold, self.config.crop_hamming_threshold if self.config.crops else 0)
        bands = self.config.bands or min(HASH_BITS, threshold + 1)
        edges = [round(i * HASH_BITS / bands) for i in range(bands + 1)]
        return list(zip(edges[:-1], edges[1:], strict=True))

    def buckets(self, keys: pa.RecordBatch, state: Any) -> list[list[str]]:
        edges = self._band_edges()
        crops = keys.column("phash_crops").to_pylist() if self.config.crops else [None] * keys.num_rows
        out = []
        for h, hc in zip(keys.column("phash").to_pylist(), crops, strict=True):
            found: set[str] = set()
            for value in [h, *(hc or ())]:  # a full hash meets the other's crop hashes in the same band space
                bits = format(int(value, 16), f"0{HASH_BITS}b")
                found.update(f"{i}:{bits[a:b]}" for i, (a, b) in enumerate(edges))
            out.append(sorted(found))
        return out

    def matches(self, a: dict[str, Any], b: dict[str, Any], state: Any) -> bool:
        ha, hb = int(a["phash"], 16), int(b["phash"], 16)
        if (ha ^ hb).bit_count() <= self.config.hamming_threshold:
            return True
        if not self.config.crops:
            return False
        t = self.config.crop_hamming_threshold
        near = any((ha ^ int(c, 16)).bit_count() <= t for c in b["phash_crops"]) or any(
            (hb ^ int(c, 16)).bit_count() <= t for c in a["phash_crops"]
        )
        return near and self.crop_correlation(a, b) >= self.config.crop_min_correlation

    @cached_property
    def _keeps(self) -> np.ndarray:
        return np.arange(self.config.crop_min_keep, 1.0 + 1e-9, 0.01)

    def _thumb(self, row: dict[str, Any]) -> np.ndarray:
        import cv2

        side = self.config.thumbnail
        rgb = np.frombuffer(row["thumbnail"], dtype=np.uint8).reshape(side, side, 3).astype(np.float32)
        return cv2.GaussianBlur(rgb, (0, 0), side / 64)  # forgives the sub-pixel misalignment of a coarse search

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
