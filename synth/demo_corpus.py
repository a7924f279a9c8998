"""The demo corpus: Debian's tuxpaint clip-art stamps with their multilingual captions, plus injected, recorded faults."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from pipelines.imaging import to_rgb

STAMPS_DIR = "/usr/share/tuxpaint/stamps"
BUILDER_VERSION = 4


@dataclass
class Fault:
    kind: str
    files: list[str]  # paths relative to the corpus folder: the samples this fault consists of
    stage: str  # the stage that must catch it
    status: str  # dropped | error
    reason: str  # the reason prefix the ledger must show
    min_rate: float = 1.0  # statistical faults: the share of `files` that must be caught (others: every file)


@dataclass
class Manifest:
    version: int
    seed: int
    stamps_dir: str
    clean_samples: int
    skipped_without_caption: int
    faults: list[Fault] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text())
        data["faults"] = [Fault(**f) for f in data["faults"]]
        return cls(**data)


def parse_description(text: str) -> tuple[str, dict[str, str]]:
    """Tux Paint's .txt: the first line is English, then `lang.utf8=translation` lines."""
    english, translations = "", {}
    for line in text.splitlines():
        if ".utf8=" in line:
            lang, _, value = line.partition(".utf8=")
            translations[lang.strip()] = value.strip()
        elif line.strip() and not english:
            english = line.strip()
    return english, translations


def build_clean(stamps_dir: str, clean: Path) -> tuple[int, int]:
    """Copy every PNG stamp that has a description: `x.png`, `x.txt` (English), `x.json` (translations)."""
    count = skipped = 0
    for png in sorted(Path(stamps_dir).rglob("*.png")):
        txt = png.with_suffix(".txt")
        if not txt.exists():
            skipped += 1
            continue
        english, translations = parse_description(txt.read_text(encoding="utf-8", errors="replace"))
        if not english:
            skipped += 1
            continue
        rel = png.relative_to(stamps_dir)
        dest = clean / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, dest)
        dest.with_suffix(".txt").write_text(english + "\n", encoding="utf-8")
        meta = {"origin": "tuxpaint-stamps-default", "stamp": str(rel), "captions": translations}
        dest.with_suffix(".json").write_text(json.dumps(meta, ensure_ascii=False, sort_keys=True))
        count += 1
    return count, skipped


class FaultInjector:
    """Writes faulty samples under `faults/` of the corpus, each recorded with the verdict it must get."""

    def __init__(self, corpus: Path, clean_images: list[Path], rng: random.Random):
        self.corpus, self.rng = corpus, rng
        self.clean_images = clean_images
        self.faults: list[Fault] = []
        (corpus / "faults").mkdir(exist_ok=True)

    def pick(self) -> Path:
        return self.rng.choice(self.clean_images)

    def caption_of(self, image: Path) -> str:
        return image.with_suffix(".txt").read_text(encoding="utf-8")

    def write(self, name: str, image: bytes, caption: bytes | str) -> str:
        path = self.corpus / "faults" / name
        path.write_bytes(image)
        raw = caption.encode() if isinstance(caption, str) else caption
        path.with_suffix(".txt").write_bytes(raw)
        return str(path.relative_to(self.corpus))

    def record(self, kind: str, files: list[str], stage: str, status: str, reason: str, min_rate: float = 1.0) -> None:
        self.faults.append(Fault(kind, files, stage, status, reason, min_rate))


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def inject_truncated(f: FaultInjector) -> None:
    for i in range(3):
        src = f.pick()
        data = src.read_bytes() if i < 2 else _jpeg(Image.open(src).resize((256, 256)))
        ext = "png" if i < 2 else "jpg"
        name = f.write(f"truncated_{i}.{ext}", data[: max(64, len(data) * 3 // 5)], f.caption_of(src))
        f.record("truncated", [name], "decode", "error", "truncated")


def inject_zero_byte(f: FaultInjector) -> None:
    for i in range(2):
        name = f.write(f"zero_byte_{i}.png", b"", f.caption_of(f.pick()))
        f.record("zero_byte", [name], "decode", "error", "empty_file")


def inject_not_an_image(f: FaultInjector) -> None:
    payloads = [b"<html><body>not an image</body></html>\n", b"PK\x03\x04 a zip archive, not a picture" * 8]
    for i, payload in enumerate(payloads):
        name = f.write(f"not_an_image_{i}.jpg", payload, "a picture that is not a picture")
        f.record("not_an_image", [name], "decode", "error", "not_an_image")


def inject_bomb(f: FaultInjector) -> None:
    # 12000 x 12000 = 144 MPixel in a few tens of KB: a classic decompression bomb.
    name = f.write("decompression_bomb.png", _png(Image.new("1", (12000, 12000)), optimize=True), "a huge blank canvas")
    f.record("decompression_bomb", [name], "decode", "error", "decompression_bomb")


def inject_tiny(f: FaultInjector) -> None:
    for i, size in enumerate([(8, 8), (12, 4), (16, 20)]):
        src = f.pick()
        name = f.write(f"tiny_{i}.png", _png(Image.open(src).convert("RGBA").resize(size)), f.caption_of(src))
        f.record("tiny", [name], "heuristics", "dropped", "too_small")


def inject_solid(f: FaultInjector) -> None:
    colours = [(255, 255, 255), (12, 80, 200), (0, 0, 0)]
    for i, colour in enumerate(colours):
        img = Image.new("RGB", (128, 96), colour)
        data = _jpeg(img) if i == 1 else _png(img)
        name = f.write(f"solid_{i}.{'jpg' if i == 1 else 'png'}", data, f.caption_of(f.pick()))
        f.record("solid_color", [name], "heuristics", "dropped", "solid_color")


def inject_bad_captions(f: FaultInjector) -> None:
    for i, caption in enumerate(["", " \t\n  \u00a0\n"]):
        src = f.pick()
        img = _png(Image.open(src).transpose(Image.Transpose.FLIP_LEFT_RIGHT))  # new pixels: not a duplicate
        kind = "empty_caption" if i == 0 else "whitespace_caption"
        name = f.write(f"{kind}.png", img, caption)
        f.record(kind, [name], "heuristics", "error", "caption_empty")
    for i, caption in enumerate(["Un caf\xe9 cr\xe8me sur la table", "Stra\xdfe im Regen"]):
        src = f.pick()
        img = _png(Image.open(src).transpose(Image.Transpose.FLIP_TOP_BOTTOM))
        name = f.write(f"not_utf8_caption_{i}.png", img, caption.encode("latin-1"))
        f.record("non_utf8_caption", [name], "read", "error", "caption_not_utf8")


def inject_duplicates(f: FaultInjector) -> None:
    for i in range(3):
        src = f.pick()
        original = str(src.relative_to(f.corpus))
        copies = [f.write(f"duplicate_{i}_copy.png", src.read_bytes(), f.caption_of(src))]
        if i > 0:  # same pixels, other bytes: re-encoded losslessly with another compression level
            img = Image.open(src)
            copies.append(f.write(f"duplicate_{i}_reencoded.png", _png(img, compress_level=1), "a copy, saved again"))
        f.record("exact_duplicate", [original, *copies], "exact_dedup", "dropped", "exact_duplicate")


def inject_near_duplicates(f: FaultInjector) -> None:
    """Copies that are not byte- or pixel-identical: resized, re-encoded at low quality, brighter, cropped.

    Each pair (original, copy) must end with one of the two dropped as a near-duplicate of the other.
    """
    import numpy as np
    from PIL import ImageEnhance

    def cropped(im: Image.Image) -> Image.Image:  # 5-10% off each side's length, anywhere
        kx, ky = f.rng.uniform(0.90, 0.95), f.rng.uniform(0.90, 0.95)
        w, h = round(im.width * kx), round(im.height * ky)
        x, y = f.rng.randint(0, im.width - w), f.rng.randint(0, im.height - h)
        return im.crop((x, y, x + w, y + h))

    edits = {
        "cropped": cropped,
        "resized": lambda im: im.resize((max(8, im.width * 3 // 5), max(8, im.height * 3 // 5)), Image.Resampling.LANCZOS),
        "low_quality": lambda im: Image.open(io.BytesIO(_jpeg(im, quality=30))),
        "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.1),
    }
    # Textured originals only: a brighter copy of an almost white stamp would be a solid colour, not a duplicate.
    textured = [p for p in f.clean_images if np.asarray(to_rgb(Image.open(p)), dtype=np.float32).std() > 20]
    originals = f.rng.sample(textured, 10 * len(edits))
    for i, (name, edit) in enumerate(sorted(edits.items())):
        for j, src in enumerate(originals[i * 10 : (i + 1) * 10]):
            image = edit(to_rgb(Image.open(src)))  # as a viewer sees it: transparency over white
            data = _jpeg(image) if name == "low_quality" else _png(image)
            ext = "jpg" if name == "low_quality" else "png"
            copy = f.write(f"near_{name}_{j}.{ext}", data, f.caption_of(src))
            # A threshold that spares distinct images misses some edits by design: 95% must be caught.
            f.record("near_duplicate", [str(src.relative_to(f.corpus)), copy], "near_dedup", "dropped",
                     "near_duplicate", min_rate=0.95)


def inject_mismatched_pairs(f: FaultInjector) -> None:
    """Real stamps (mirrored, so they are no duplicate of their original) captioned with another stamp's text."""
    images = f.rng.sample(f.clean_images, 40)
    for i, src in enumerate(images):
        other = f.rng.choice([p for p in f.clean_images if f.caption_of(p) != f.caption_of(src)])
        mirrored = _png(to_rgb(Image.open(src)).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
        name = f.write(f"mismatched_{i:02d}.png", mirrored, f.caption_of(other))
        # A model's verdict, not a rule's: the CLIP stage must catch at least 80% of them.
        f.record("mismatched_pair", [name], "clip_score", "dropped", "clip_score_low", min_rate=0.8)


INJECTORS: list[Callable[[FaultInjector], None]] = [
    inject_truncated, inject_zero_byte, inject_not_an_image, inject_bomb, inject_tiny,
    inject_solid, inject_bad_captions, inject_duplicates, inject_near_duplicates, inject_mismatched_pairs,
]


def build_demo_corpus(root: str | Path, stamps_dir: str = STAMPS_DIR, seed: int = 0, force: bool = False) -> Manifest:
    """Build `root/clean` (real stamps) and `root/corpus` (a copy plus faults); `root/manifest.json` records the faults.

    Idempotent: an existing corpus of the same builder version and seed is reused.
    """
    root = Path(root)
    manifest_path = root / "manifest.json"
    if manifest_path.exists() and not force:
        manifest = Manifest.load(manifest_path)
        if manifest.version == BUILDER_VERSION and manifest.seed == seed and (root / "corpus").is_dir():
            return manifest
    if not os.path.isdir(stamps_dir):
        raise FileNotFoundError(
            f"{stamps_dir} not found: install Debian's tuxpaint-stamps-default (scripts/setup.sh does)"
        )
    for sub in ("clean", "corpus"):
        shutil.rmtree(root / sub, ignore_errors=True)
    clean, corpus = root / "clean", root / "corpus"
    clean.mkdir(parents=True)
    count, skipped = build_clean(stamps_dir, clean)
    shutil.copytree(clean, corpus)
    rng = random.Random(seed)
    images = sorted(corpus.rglob("*.png"))
    # Faults derive from stamps large enough that their verdict is the injected one, not "too small".
    usable = [p for p in images if min(Image.open(p).size) >= 48]
    injector = FaultInjector(corpus, usable, rng)
    for inject in INJECTORS:
        inject(injector)
    manifest = Manifest(BUILDER_VERSION, seed, stamps_dir, count, skipped, injector.faults)
    manifest.save(manifest_path)
    return manifest


GROUP_KINDS = ("exact_duplicate", "near_duplicate")  # faults made of an original and its copies


def _caught(fault: Fault, rows: list[dict]) -> bool:
    """A group fault is caught when all but one member lost to another member; any other, when every row has
    the fault's stage, status and reason."""
    def right(r: dict) -> bool:
        return (r["stage"], r["status"]) == (fault.stage, fault.status) and (r["reason"] or "").startswith(fault.reason)

    if fault.kind in GROUP_KINDS:
        # Caught when at most one member reaches the output and every member the dedup stage dropped lost to a
        # member of the group; members an earlier stage dropped (a CLIP score too low) are gone upstream.
        keys = {r["key"] for r in rows}
        at_stage = [r for r in rows if r["stage"] == fault.stage]
        return sum(r["status"] == "kept" for r in rows) <= 1 and all(
            right(r) and r["reason"].split(":", 1)[-1] in keys for r in at_stage
        )
    return all(right(r) for r in rows)


def _judged(
    manifest: Manifest, ledger_rows: list[dict], corpus: str | Path, stages: Iterable[str] | None
) -> Iterator[tuple[Fault, list[dict | None]]]:
    """Each fault a recipe with `stages` can catch (all when None), with the ledger row of each of its files
    (None where a file has none)."""
    corpus = str(corpus)
    by_source = {os.path.relpath(r["source"], corpus): r for r in ledger_rows if r["source"]}
    wanted = None if stages is None else {"read", *stages}
    for fault in manifest.faults:
        if wanted is None or fault.stage in wanted:
            yield fault, [by_source.get(f) for f in fault.files]


def check_faults(
    manifest: Manifest, ledger_rows: list[dict], corpus: str | Path, stages: Iterable[str] | None = None
) -> list[str]:
    """Every injected fault must sit in the ledger under its stage, status and reason. Returns the problems.

    Faults with `min_rate` < 1 (statistical ones) are judged per kind: that share of them must be caught.
    With `stages` (the recipe's), faults for a stage the recipe does not run are not judged.
    """
    problems = []
    tallies: dict[str, list] = {}
    for fault, rows in _judged(manifest, ledger_rows, corpus, stages):
        if any(r is None for r in rows):
            problems.append(f"{fault.kind}: {fault.files} not all in the ledger")
            continue
        ok = _caught(fault, rows)  # type: ignore[arg-type]
        if fault.min_rate >= 1.0:
            if not ok:
                problems.append(f"{fault.kind}: {[(r['source'], r['status'], r['stage'], r['reason']) for r in rows]}")
            continue
        tally = tallies.setdefault(fault.kind, [0, 0, fault.min_rate, []])
        tally[0] += ok
        tally[1] += 1
        if not ok:
            tally[3].append([(os.path.basename(r["source"]), r["status"], r["stage"], r["reason"]) for r in rows])
    for kind, (caught, total, rate, missed) in tallies.items():
        if caught < rate * total:
            problems.append(f"{kind}: {caught}/{total} caught, need {rate:.0%}; missed: {missed[:5]}")
    return problems


def fault_rates(
    manifest: Manifest, ledger_rows: list[dict], corpus: str | Path, stages: Iterable[str] | None = None
) -> dict[str, tuple[int, int]]:
    """Per fault kind: (caught, injected)."""
    out: dict[str, tuple[int, int]] = {}
    for fault, rows in _judged(manifest, ledger_rows, corpus, stages):
        ok = all(r is not None for r in rows) and _caught(fault, rows)  # type: ignore[arg-type]
        c, t = out.get(fault.kind, (0, 0))
        out[fault.kind] = (c + int(ok), t + 1)
    return out


DEDUP_STAGES = ("near_dedup", "semantic_dedup")
MAX_DISTINCT_DROPPED = 0.01  # share of distinct images a near-duplicate stage may drop


def distinct_dropped(manifest: Manifest, ledger_rows: list[dict], corpus: str | Path) -> tuple[list[str], int]:
    """Stamps that are in no injected fault yet a near-duplicate stage dropped, and how many such stamps there are.

    Tuxpaint has a few stamps that are one picture twice (the same fireman in two folders, `l` and `I` glyphs):
    they count here too, as a user would count them.
    """
    corpus = str(corpus)
    in_faults = {f for fault in manifest.faults for f in fault.files}
    distinct = [r for r in ledger_rows if r["source"] and os.path.relpath(r["source"], corpus) not in in_faults]
    dropped = [os.path.relpath(r["source"], corpus) for r in distinct if r["stage"] in DEDUP_STAGES and r["status"] == "dropped"]
    return dropped, len(distinct)
