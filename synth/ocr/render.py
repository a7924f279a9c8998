"""Draw text into an image: wrap it into lines, draw it as a mask, rotate it, colour it over a background with
readable contrast, and know where every line and word landed (boxes of their ink, in pixels of the output)."""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from synth.ocr.corpus import is_cjk

Point = tuple[float, float]
Quad = list[Point]

_TOKEN = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]|[^\s\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]+")


@dataclass
class Word:
    text: str
    quad: Quad  # four corners (clockwise from the top left of the unrotated word), output pixels

    @property
    def box(self) -> list[float]:
        return bounds(self.quad)


@dataclass
class Line:
    text: str
    words: list[Word] = field(default_factory=list)
    quad: Quad = field(default_factory=list)

    @property
    def box(self) -> list[float]:
        return bounds(self.quad)


def bounds(quad: Quad) -> list[float]:
    xs, ys = [p[0] for p in quad], [p[1] for p in quad]
    return [min(xs), min(ys), max(xs), max(ys)]


def tokens(text: str) -> list[tuple[str, bool]]:
    """Words and whether a space follows each: runs of non-space characters, except that each CJK character is a
    word of its own (Chinese has no spaces; a line may break between any two characters)."""
    out: list[tuple[str, bool]] = []
    for m in _TOKEN.finditer(text):
        space_after = m.end() < len(text) and text[m.end()].isspace()
        out.append((m.group(), space_after))
    return out


def wrap(text: str, font: ImageFont.FreeTypeFont, max_width: int, max_lines: int) -> list[list[tuple[str, bool]]]:
    """Greedy line filling of `text`'s words within `max_width` pixels; words past `max_lines` lines are left out
    (they are not in the image, so they are not in the ground truth either)."""
    lines: list[list[tuple[str, bool]]] = [[]]
    for word, space in tokens(text):
        candidate = lines[-1] + [(word, space)]
        if lines[-1] and font.getlength(line_text(candidate)) > max_width:
            if len(lines) == max_lines:
                break
            lines.append([(word, space)])
        else:
            lines[-1] = candidate
    return [ln for ln in lines if ln]


def line_text(words: list[tuple[str, bool]]) -> str:
    return "".join(w + (" " if space and i < len(words) - 1 else "") for i, (w, space) in enumerate(words))


@dataclass
class TextLayer:
    """The drawn text as a mask (255 = ink), with its lines and words in the mask's pixels."""

    mask: Image.Image
    lines: list[Line]

    @property
    def text(self) -> str:
        """The ground truth: every drawn line in reading order."""
        return "\n".join(ln.text for ln in self.lines)


def draw_mask(text: str, font: ImageFont.FreeTypeFont, max_width: int, max_lines: int, line_spacing: float,
              align: str, pad: int) -> TextLayer:
    wrapped = wrap(text, font, max_width, max_lines)
    ascent, descent = font.getmetrics()
    step = max(1, round((ascent + descent) * line_spacing))
    texts = [line_text(ws) for ws in wrapped]
    widths = [math.ceil(font.getlength(t)) for t in texts]
    block_w = max(widths, default=1)
    height = step * (len(texts) - 1) + ascent + descent if texts else 1
    mask = Image.new("L", (block_w + 2 * pad, height + 2 * pad), 0)
    draw = ImageDraw.Draw(mask)
    lines: list[Line] = []
    for i, (ws, txt, w) in enumerate(zip(wrapped, texts, widths, strict=True)):
        x0 = pad + {"left": 0, "center": (block_w - w) / 2, "right": block_w - w}[align]
        y0 = pad + i * step
        draw.text((x0, y0), txt, font=font, fill=255, anchor="la")
        line = Line(txt)
        pos = 0
        for word, space in ws:
            start = txt.index(word, pos)
            dx = font.getlength(txt[:start])
            bx0, by0, bx1, by1 = ink_box(font, word)
            line.words.append(Word(word, _rect(x0 + dx + bx0, y0 + by0, x0 + dx + bx1, y0 + by1)))
            pos = start + len(word) + (1 if space else 0)
        if line.words:
            x1, y1, x2, y2 = _union([w.quad for w in line.words])
            line.quad = _rect(x1, y1, x2, y2)
            lines.append(line)
    return TextLayer(mask, lines)


def ink_box(font: ImageFont.FreeTypeFont, word: str) -> tuple[int, int, int, int]:
    """The glyphs' ink of `word` drawn at the origin (anchor left-ascender): `getbbox` would reach to the advance
    width, past the ink of a trailing period."""
    mask, (ox, oy) = font.getmask2(word, mode="L", anchor="la")
    box = mask.getbbox()
    if box is None:
        return font.getbbox(word, anchor="la")
    return ox + box[0], oy + box[1], ox + box[2], oy + box[3]


def _rect(x1: float, y1: float, x2: float, y2: float) -> Quad:
    return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]


def _union(quads: list[Quad]) -> list[float]:
    boxes = [bounds(q) for q in quads]
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def rotate(layer: TextLayer, angle: float) -> TextLayer:
    """`layer` rotated `angle` degrees counter-clockwise (the canvas grows to hold it), points moved with it.

    The forward map inverts the affine matrix Pillow's `Image.rotate(expand=True)` builds, so boxes follow the
    pixels exactly."""
    if not angle:
        return layer
    w, h = layer.mask.size
    rad = -math.radians(angle)
    a, b, d, e = math.cos(rad), math.sin(rad), -math.sin(rad), math.cos(rad)
    cx, cy = w / 2.0, h / 2.0

    def back(x: float, y: float) -> Point:  # output → input, Pillow's matrix before the expand shift
        return a * x + b * y + (a * -cx + b * -cy) + cx, d * x + e * y + (d * -cx + e * -cy) + cy

    xs, ys = zip(*(back(x, y) for x, y in ((0, 0), (w, 0), (w, h), (0, h))), strict=True)
    nw, nh = math.ceil(max(xs)) - math.floor(min(xs)), math.ceil(max(ys)) - math.floor(min(ys))
    tx, ty = back(-(nw - w) / 2.0, -(nh - h) / 2.0)
    # input = A·out + t with A = [[a, b], [d, e]], t = (tx, ty); A is a rotation, so A⁻¹ = Aᵀ.

    def fwd(p: Point) -> Point:
        x, y = p[0] - tx, p[1] - ty
        return a * x + d * y, b * x + e * y

    mask = layer.mask.rotate(angle, resample=Image.BICUBIC, expand=True)
    lines = [Line(ln.text, [Word(wd.text, [fwd(p) for p in wd.quad]) for wd in ln.words], [fwd(p) for p in ln.quad])
             for ln in layer.lines]
    return TextLayer(mask, lines)


def shift(layer: TextLayer, dx: float, dy: float) -> list[Line]:
    def mv(q: Quad) -> Quad:
        return [(x + dx, y + dy) for x, y in q]

    return [Line(ln.text, [Word(w.text, mv(w.quad)) for w in ln.words], mv(ln.quad)) for ln in layer.lines]


def luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG relative luminance of sRGB colours (last axis = RGB, 0–255)."""
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def contrast(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return (hi + 0.05) / (lo + 0.05)


def pick_color(background_lum: float, min_contrast: float, rnd: random.Random, tries: int = 24) -> tuple[int, int, int]:
    """A random text colour whose WCAG contrast with the background is at least `min_contrast`; black or white
    (whichever contrasts more) if no random colour does within `tries`."""
    for _ in range(tries):
        color = (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
        if contrast(float(luminance(np.array(color))), background_lum) >= min_contrast:
            return color
    return (0, 0, 0) if contrast(0.0, background_lum) >= contrast(1.0, background_lum) else (255, 255, 255)


def composite(background: Image.Image, layer: TextLayer, at: tuple[int, int], min_contrast: float,
              rnd: random.Random) -> tuple[Image.Image, tuple[int, int, int], float]:
    """Paint the mask over `background` at `at` in a colour that contrasts with what lies under the ink.
    Returns the image, the colour and the contrast ratio reached."""
    x, y = at
    w, h = layer.mask.size
    under = np.asarray(background.crop((x, y, x + w, y + h))).reshape(-1, 3)
    weights = np.asarray(layer.mask).reshape(-1).astype(np.float64)
    mean = (under * weights[:, None]).sum(axis=0) / max(weights.sum(), 1.0)
    bg_lum = float(luminance(mean))
    color = pick_color(bg_lum, min_contrast, rnd)
    out = background.copy()
    out.paste(color, (x, y, x + w, y + h), layer.mask)
    return out, color, contrast(float(luminance(np.array(color))), bg_lum)


def script_of(text: str) -> str:
    return "zh" if is_cjk(text) else "latin"
