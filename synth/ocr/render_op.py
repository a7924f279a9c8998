"""`ocr_render`: rendered documents. A seed row (or a text-corpus / curated-shard row) becomes rendered images of
real text in varied fonts, sizes, colours, weights, spacing, rotation and alignment over plain, noise or photo
backgrounds; each is read back by PP-OCR and kept only when its character error rate is low enough."""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Iterable
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from pipelines import columns as C
from pipelines.operator import Generator, OperatorConfig
from synth.ocr import backgrounds as bg
from synth.ocr.corpus import DEFAULT_CORPUS, drawable, is_cjk, load_corpus
from synth.ocr.fonts import DEFAULT_FONTS, FontError, FontFace, cached_face
from synth.ocr.render import TextLayer, composite, draw_mask, rotate, shift
from synth.ocr.tasks import ocr_messages
from synth.ocr.verify import OcrEngine, cer, read_text

Range = tuple[float, float]
MIN_SPAN = 20  # a sample starts at a sentence with at least this many characters after it
_CLOSING = "）)」』”’，。、"
IntRange = tuple[int, int]


class VerifyConfig(OperatorConfig):
    enabled: bool = Field(True, description="Read every sample back with PP-OCR and record its CER.")
    max_cer: float = Field(0.1, ge=0.0, description="Samples whose read-back CER is above this are dropped.")
    backend: Literal["rapidocr", "paddleocr"] = Field("rapidocr", description="PP-OCR runtime.")
    threads: int = Field(1, ge=0, description="onnxruntime threads per worker (0: all cores).")
    min_score: float = Field(0.5, ge=0.0, le=1.0, description="Recognitions below this score are ignored.")
    det_side: int = Field(960, ge=32, description="Detection input: the long side is scaled down to this, never up.")
    use_cls: bool = Field(False, description="Run PP-OCR's 180° line classifier (it misfires on upright text).")


class RenderConfig(OperatorConfig):
    per_seed: int = Field(1, ge=1, description="Samples rendered per parent row.")
    corpus: list[str] = Field(list(DEFAULT_CORPUS), description="Text files or folders of them (.txt/.md/.rst/.gz).")
    corpus_min_chars: int = Field(40, ge=1, description="Shorter paragraphs are not used.")
    cjk_share: float | None = Field(0.35, ge=0.0, le=1.0, description="Share of samples drawn from the corpus's "
                                    "CJK paragraphs (None: as they come in the corpus).")
    use_row_text: bool = Field(True, description="A parent with text (a text corpus row, a curated caption) "
                               "renders its own text instead of the corpus.")
    fonts: list[str] = Field(list(DEFAULT_FONTS), description="Font files; PATH#FAMILY names one face of a .ttc.")
    font_choice: Literal["covering", "any"] = Field(
        "covering", description="covering: a font that cannot draw the text is swapped for one that can; "
        "any: it is kept and the sample is dropped as tofu.")
    font_size: IntRange = Field((18, 44), description="Font size range, pixels.")
    line_spacing: Range = Field((1.0, 1.6), description="Line pitch as a multiple of the font's height.")
    max_lines: IntRange = Field((1, 8), description="Lines per image (the text is cut at a line end).")
    width: IntRange = Field((240, 720), description="Wrap width of the text block, pixels.")
    rotation: float = Field(4.0, ge=0.0, le=45.0, description="Largest rotation, degrees either way.")
    align: list[Literal["left", "center", "right"]] = Field(["left", "center", "right"])
    margin: IntRange = Field((8, 40), description="Background margin around the text, pixels.")
    backgrounds: list[str] = Field(default_factory=list, description="Photo backgrounds: image folders, WebDataset "
                                   "tars or curated output folders.")
    max_backgrounds: int = Field(256, ge=1, description="Photo backgrounds held per worker.")
    parent_image: bool = Field(True, description="A parent row's own image (curated shards) is its background.")
    background_weights: dict[Literal["plain", "noise", "photo"], float] = Field(
        {"plain": 1.0, "noise": 1.0, "photo": 2.0}, description="Odds of each background kind (photo: when any).")
    background_fade: float = Field(0.55, ge=0.0, le=1.0, description="How far a photo is blended to its mean colour.")
    min_contrast: float = Field(4.5, ge=1.0, le=21.0, description="WCAG contrast of text against what lies under it.")
    verify: VerifyConfig = Field(default_factory=VerifyConfig)


def row_random(key: str, *salt: object) -> random.Random:
    """All randomness of a sample: seeded by its parent's key (and index), so reruns and engines agree."""
    digest = hashlib.sha1("\x00".join([key, *map(str, salt)]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def png_bytes(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


class RenderDocs(Generator):
    """Rendered documents with line and word boxes, verified by PP-OCR read-back."""

    name = "ocr_render"
    Config = RenderConfig
    reads = ()
    adds = (
        *C.IMAGE_FIELDS,
        C.OCR,
        C.MESSAGES,
        pa.field("font", pa.string()),  # family and weight, e.g. "DejaVu Sans bold"
        pa.field("font_file", pa.string()),
        pa.field("font_size", pa.int32()),  # pixels
        pa.field("font_weight", pa.string()),
        pa.field("color", pa.string()),  # "#rrggbb"
        pa.field("background", pa.string()),  # plain | noise | photo:SOURCE
        pa.field("rotation", pa.float32()),  # degrees, counter-clockwise
        pa.field("align", pa.string()),
        pa.field("line_spacing", pa.float32()),
        pa.field("contrast", pa.float32()),  # WCAG ratio of the text colour against the background under it
        pa.field("lang", pa.string()),  # "zh" | "latin"
        pa.field("cer", pa.float32()),  # PP-OCR read-back character error rate (null: not verified)
        pa.field("ocr_read", pa.string()),  # what PP-OCR read
    )

    def setup(self) -> None:
        cfg = self.config
        self.corpus = load_corpus(cfg.corpus, cfg.corpus_min_chars) if cfg.corpus else []
        self.corpus_cjk = [p for p in self.corpus if is_cjk(p)]
        self.corpus_latin = [p for p in self.corpus if not is_cjk(p)]
        self.photos = bg.collect_images(cfg.backgrounds, cfg.max_backgrounds) if cfg.backgrounds else []
        self.faces: dict[str, FontFace | FontError] = {}
        for spec in cfg.fonts:
            try:
                self.faces[spec] = cached_face(spec)
            except FontError as exc:
                self.faces[spec] = exc  # recorded on every sample that draws this font
        self.ocr = OcrEngine(cfg.verify.backend, cfg.verify.threads, cfg.verify.min_score,
                                                     cfg.verify.det_side, cfg.verify.use_cls) if cfg.verify.enabled \
            else None

    # -- choices ---------------------------------------------------------------------------------------------
    def _text(self, row: dict[str, Any], rnd: random.Random) -> str:
        if self.config.use_row_text and (row.get("text") or "").strip():
            return drawable(row["text"])  # control characters out: the label says exactly what is drawn
        pool = self.corpus
        share = self.config.cjk_share
        if share is not None and self.corpus_cjk and self.corpus_latin:
            pool = self.corpus_cjk if rnd.random() < share else self.corpus_latin
        if not pool:
            return ""
        para = pool[rnd.randrange(len(pool))]
        # Start at a random sentence so that samples of one paragraph differ.
        starts = [0] + [i + 1 for i, ch in enumerate(para[:-1])
                        if (ch in ".!?" and para[i + 1] == " " or ch in "。！？") and para[i + 1] not in _CLOSING
                        and len(para) - i > MIN_SPAN]
        return para[starts[rnd.randrange(len(starts))]:].strip() or para

    def _face(self, text: str, rnd: random.Random) -> FontFace | str:
        """The font to draw `text` with, or the drop reason (font_load_failed:…, tofu:U+XXXX)."""
        specs = list(self.faces)
        face = self.faces[specs[rnd.randrange(len(specs))]]
        if isinstance(face, FontError):
            return str(face)
        missing = face.missing(text)
        if missing and self.config.font_choice == "covering":
            covering = [f for f in self.faces.values() if isinstance(f, FontFace) and not f.missing(text)]
            if covering:
                return covering[rnd.randrange(len(covering))]
        if missing:
            return f"tofu:U+{ord(missing[0]):04X}"
        return face

    def _background(self, row: dict[str, Any], size: tuple[int, int], rnd: random.Random) -> tuple[Any, str]:
        cfg = self.config
        own = row.get("image") if cfg.parent_image else None
        weights = dict(cfg.background_weights)
        if not (own or self.photos):
            weights.pop("photo", None)
        kinds = [k for k, w in weights.items() if w > 0] or ["plain"]
        kind = rnd.choices(kinds, weights=[weights.get(k, 1.0) for k in kinds])[0]
        if kind == "plain":
            return bg.plain(size, rnd), "plain"
        if kind == "noise":
            return bg.noise(size, rnd), "noise"
        name, data = (row.get("source") or row.get("key") or "parent", own) if own else \
            self.photos[rnd.randrange(len(self.photos))]
        return bg.photo(bg.decode(data, name), size, rnd, cfg.background_fade), f"photo:{name}"

    # -- one sample ------------------------------------------------------------------------------------------
    def render_one(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        cfg = self.config
        rnd = row_random(row["key"], self.name, index)
        text = self._text(row, rnd)
        if not text.strip():
            return {"keep": False, "reason": "empty_text"}
        face = self._face(text, rnd)
        if isinstance(face, str):
            return {"keep": False, "reason": face}
        size = rnd.randint(*cfg.font_size)
        spacing = rnd.uniform(*cfg.line_spacing)
        align = rnd.choice(cfg.align)
        angle = round(rnd.uniform(-cfg.rotation, cfg.rotation), 2)
        try:
            font = face.pil(size)
        except FontError as exc:
            return {"keep": False, "reason": str(exc)}
        layer = draw_mask(text, font, rnd.randint(*cfg.width), rnd.randint(*cfg.max_lines), spacing, align,
                          pad=max(2, size // 4))
        if not layer.lines:
            return {"keep": False, "reason": "empty_text"}
        layer = rotate(layer, angle)
        ml, mt, mr, mb = (rnd.randint(*cfg.margin) for _ in range(4))
        w, h = layer.mask.width + ml + mr, layer.mask.height + mt + mb
        meta: dict[str, Any] = {
            "font": face.name, "font_file": face.spec, "font_size": size, "font_weight": face.weight,
            "rotation": angle, "align": align, "line_spacing": round(spacing, 3), "lang": "zh" if is_cjk(text) else
            "latin", "text": layer.text,
        }
        try:
            background, kind = self._background(row, (w, h), rnd)
        except bg.BackgroundError as exc:
            return {**meta, "keep": False, "reason": str(exc)}
        image, color, ratio = composite(background, layer, (ml, mt), cfg.min_contrast, rnd)
        lines = shift(TextLayer(layer.mask, layer.lines), ml, mt)
        items = [C.ocr_item(ln.text, _clip(ln.box, w, h), ln.quad, None, "line") for ln in lines]
        items += [C.ocr_item(wd.text, _clip(wd.box, w, h), wd.quad, None, "word") for ln in lines for wd in ln.words]
        out = {
            **meta, "image": png_bytes(image), "image_format": "png", "width": w, "height": h, "ocr": items,
            "color": "#{:02x}{:02x}{:02x}".format(*color), "background": kind, "contrast": round(ratio, 2),
            "messages": ocr_messages(layer.text, [(ln.text, _clip(ln.box, w, h)) for ln in lines], w, h, rnd),
        }
        if self.ocr is not None:
            read = read_text(self.ocr.read(image))
            out["ocr_read"] = read
            out["cer"] = round(cer(read, layer.text), 4)
            if out["cer"] > cfg.verify.max_cer:
                out.update(keep=False, reason=f"cer_too_high:{out['cer']:.2f}")
        return out

    def generate(self, row: dict[str, Any]) -> Iterable[dict[str, Any]]:
        for i in range(self.config.per_seed):
            yield self.render_one(row, i)


def _clip(box: list[float], w: int, h: int) -> list[float]:
    x1, y1, x2, y2 = box
    return [max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)]
