"""Read the samples of a synthetic-OCR output (`vlmdata synth ocr-render`) with an OCR engine the pipeline does not
use (Tesseract), and print how often it agrees with each sample's text: an independent check that the labels say
what the pictures show. PP-OCR read every kept sample back already (its CER is in each `.json`); Tesseract is a
different model family (LSTM on binarised lines), so agreement here is not the pipeline grading itself.

Needs the `tesseract` binary with the `eng` and `chi_sim` data (Debian: apt-get install tesseract-ocr
tesseract-ocr-eng tesseract-ocr-chi-sim); it is not a dependency of vlmdata.

Run: .venv/bin/python scripts/ocr_crosscheck.py OUT [--max-cer 0.1] [--limit N]
"""

from __future__ import annotations

import argparse
import glob
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict

from pipelines.codec import iter_samples
from synth.ocr.verify import cer


def tesseract(image: bytes, lang: str) -> str:
    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        f.write(image)
        f.flush()
        done = subprocess.run(["tesseract", f.name, "-", "-l", lang, "--psm", "6"], capture_output=True, text=True,
                              timeout=120)
    return done.stdout


def compare(text: str, truth: str, cjk: bool) -> float:
    if cjk:  # Tesseract puts spaces between CJK glyphs; the lines of the truth are broken where the renderer wrapped
        text, truth = "".join(text.split()), "".join(truth.split())
    return cer(text, truth)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("output", help="an ocr-render output folder (its shards/*.tar are read)")
    ap.add_argument("--max-cer", type=float, default=0.1, help="agreement: CER against the sample's text at most this")
    ap.add_argument("--limit", type=int, default=None, help="read at most this many samples")
    args = ap.parse_args()
    if shutil.which("tesseract") is None:
        sys.exit("tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim")
    rows: list[tuple[str, str, float, str, str]] = []
    for path in sorted(glob.glob(f"{args.output}/shards/*.tar")):
        with open(path, "rb") as stream:
            for sample in iter_samples(stream, path):
                if args.limit is not None and len(rows) >= args.limit:
                    break
                meta = json.loads(sample["json"])
                image = sample.get("png") or sample.get("jpg")
                truth = meta.get("caption")
                if image is None or not isinstance(truth, str):
                    continue
                cjk = meta.get("lang") == "zh"
                read = tesseract(image, "chi_sim+eng" if cjk else "eng")
                rows.append((meta.get("lang", "?"), meta.get("background", "?"), compare(read, truth, cjk),
                             sample["__key__"], read))
    if not rows:
        sys.exit(f"no OCR samples under {args.output}/shards")
    print(f"{len(rows)} samples; Tesseract {subprocess.run(['tesseract', '--version'], capture_output=True, text=True).stdout.split()[1]}; "
          f"agreement = CER ≤ {args.max_cer} against the sample's text")
    groups: dict[str, list[float]] = defaultdict(list)
    for lang, background, c, _, _ in rows:
        groups["all"].append(c)
        groups[f"lang {lang}"].append(c)
        groups[f"background {background}"].append(c)
    for name, values in groups.items():
        agree = sum(v <= args.max_cer for v in values)
        print(f"  {name:<20} n={len(values):>4}  agree {agree / len(values):.3f}  median CER {statistics.median(values):.3f}")
    print("largest disagreements (look at these pictures: a wrong label, or Tesseract misreading):")
    for lang, background, c, key, read in sorted(rows, key=lambda r: -r[2])[:5]:
        print(f"  {key}  CER {c:.2f}  {lang}/{background}  tesseract read {read[:60]!r}")


if __name__ == "__main__":
    main()
