"""Factual recaptioning: every check on hand-written candidate captions; the operator against a scripted
OpenAI-compatible teacher on loopback (accepted, fallbacks with reasons, PP-OCR excusing a number the image
contradicts, the ratio draw, images validated by `decode` before any reaches the teacher); and `vlmdata synth
recaption` against `vlmdata serve-model --model tiny`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from aiohttp import web
from PIL import Image, ImageDraw, ImageFont

from pipelines.codec import TarWriter, decode_sample, tarfile_samples
from synth import recaption
from synth.recaption.checks import RecaptionChecks, candidate_text, check_recaption, facts, missing_facts
from tests.aio import serve_in_thread
from tests.images import png_bytes
from tests.model.test_serve import running_server

REPO = Path(__file__).resolve().parents[2]
ORIGINAL = "A red bus with the number 42 drives past the Eiffel Tower in Paris."


def test_facts_of_a_caption():
    f = facts('A sign reads "OPEN 24 HOURS" outside Joe\'s Diner; the NASA rocket stands 1,200 ft tall.')
    assert f.quoted == ["OPEN 24 HOURS"] and "1,200" in f.numbers and "24" in f.numbers
    assert "Joe's Diner" in f.entities and "NASA" in f.entities and "A" not in f.entities
    assert facts("The dog's toys don't squeak.").quoted == []  # apostrophes are not quotes


@pytest.mark.parametrize("candidate, reason", [
    ("A red double-decker bus numbered 42 passes the Eiffel Tower in Paris on a sunny afternoon.", None),
    ("A red double-decker bus passes a tall iron tower in a city on a sunny afternoon today.",
     "lost_entity:Eiffel Tower"),
    ("A red bus drives past the Eiffel Tower in Paris on a sunny afternoon with tourists.", "lost_number:42"),
    ("Un bus rouge numéro 42 passe devant la Tour Eiffel à Paris par une journée ensoleillée.", "language:en->fr"),
    ("A bus.", "too_short:6"),
    ("bus 42 Eiffel Tower Paris " + "and the bus goes on " * 8, "repetition:"),
    ("", "empty"),
    ("A red bus, number 42, near the Eiffel Tower in Paris. " * 40, "too_long:"),
])
def test_check_recaption(candidate, reason):
    got = check_recaption(ORIGINAL, candidate, RecaptionChecks(max_chars=1000))
    assert got == reason if reason is None or not reason.endswith(":") else got.startswith(reason)


def test_ocr_contradiction_excuses_numbers_and_quotes_only():
    original = 'A shop sign that says "OPEN" above the door of Rossi Bakery, number 12.'
    candidate = "A shop sign above the door of Rossi Bakery; the sign reads CLOSED and shows 15."
    assert missing_facts(original, candidate) == ["number:12", "quote:OPEN"]
    assert missing_facts(original, candidate, ocr_text="CLOSED\nRossi Bakery 15") == []  # the image says otherwise
    assert missing_facts(original, candidate, ocr_text="OPEN 12") == ["number:12", "quote:OPEN"]  # it agrees
    assert missing_facts(original, candidate.replace("Rossi Bakery", "a bakery"), "CLOSED 15") == \
        ["entity:Rossi Bakery"]  # names are never excused
    assert candidate_text("<think>look</think><answer>A blue square.</answer>") == "A blue square."


# ---------------------------------------------------------------- the operator against a scripted teacher

def sign_png(text: str) -> bytes:
    im = Image.new("RGB", (480, 160), "white")
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 64)
    ImageDraw.Draw(im).text((30, 40), text, fill="black", font=font)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


CAPTIONS = {  # original caption → what the scripted teacher writes
    ORIGINAL: "A red double-decker bus numbered 42 passes the Eiffel Tower in Paris on a sunny afternoon.",
    "A blue square drawn by Anna Berg on white paper.": "A blue square on white paper, drawn with a ruler.",
    "Eine rote Katze schläft auf dem Sofa im Wohnzimmer.": "A red cat is sleeping on the sofa in the living room.",
    'A shop sign that reads "OPEN 24".': "A white shop sign with the black words CLOSED 25 painted on it.",
}


@contextmanager
def scripted_teacher(asked: list[str] | None = None) -> Iterator[str]:
    """The teacher on loopback; `asked` collects the text of every request it answers."""
    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        parts = body["messages"][-1]["content"]
        assert parts[0]["type"] == "image_url" and parts[0]["image_url"]["url"].startswith("data:image/")
        text = parts[1]["text"]
        if asked is not None:
            asked.append(text)
        answer = next(v for k, v in CAPTIONS.items() if k in text)
        return web.json_response({"id": "x", "object": "chat.completion", "model": "scripted",
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                               "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 10, "completion_tokens": 20}})

    app = web.Application()
    app.add_routes([web.get("/v1/models", models), web.post("/v1/chat/completions", chat)])
    with serve_in_thread(app) as url:
        yield f"{url}/v1"


def write_shards(folder: Path, captions: list[str], images: list[bytes]) -> Path:
    folder.mkdir(parents=True)
    with open(folder / "00000-0000.tar", "wb") as f, TarWriter(f) as tar:
        for i, (caption, image) in enumerate(zip(captions, images, strict=True)):
            tar.write({"__key__": f"s{i:03d}", "png": image, "txt": caption, "json": json.dumps({"i": i})})
    return folder


def samples(out: Path) -> dict[str, dict]:
    found = {}
    for s in tarfile_samples(sorted(str(p) for p in (out / "shards").glob("*.tar"))):
        s = decode_sample(s)
        found[s["json"]["caption_original"]] = {**s["json"], "txt": s["txt"]}
    return found


def test_recaption_operator_checks_falls_back_and_mixes(tmp_path):
    captions = list(CAPTIONS) + ["   "]
    images = [png_bytes(size=(96, 64), seed=i) for i in range(3)] + [sign_png("CLOSED 25"), png_bytes(seed=9)]
    shards = write_shards(tmp_path / "in", captions, images)
    out = tmp_path / "out"
    with scripted_teacher() as url:
        report = recaption.run(str(shards), str(out), teacher=url, overrides={
            "engine.name": "local", "engine.workers": 0, "stages.1.ocr": True, "stages.1.ratio": 1.0})
    got = samples(out)
    assert len(got) == 5  # a failing recaption never drops the sample
    bus = got[ORIGINAL]
    assert bus["recaption_ok"] and bus["caption_source"] == "recaption" and bus["txt"] == CAPTIONS[ORIGINAL]
    anna = got["A blue square drawn by Anna Berg on white paper."]
    assert anna["recaption_reason"] == "lost_entity:Anna Berg" and anna["txt"] == anna["caption_original"]
    assert anna["recaption"] == CAPTIONS[anna["caption_original"]]  # both captions are in the .json
    cat = got["Eine rote Katze schläft auf dem Sofa im Wohnzimmer."]
    assert cat["recaption_reason"] == "language:de->en" and cat["caption_source"] == "original"
    sign = got['A shop sign that reads "OPEN 24".']
    assert sign["recaption_ok"], sign  # PP-OCR reads CLOSED 25: the image contradicts the original's text
    assert got["   "]["recaption_reason"] == "no_caption"
    assert report["accepted"] == 2 and report["fallback"] == {"language": 1, "lost_entity": 1, "no_caption": 1}
    assert json.loads((out / "stats.json").read_text())["recaption"] == report
    ledger = pq.read_table(out / "ledger.parquet").to_pylist()
    assert [r["status"] for r in ledger] == ["kept"] * 5


def test_ratio_draw_is_seeded_per_key(tmp_path):
    captions = [f"A photo of the {n} Building in Boston taken in 1990." for n in
                ("Hancock", "Prudential", "Custom", "Ames", "Sears", "Exchange", "Tremont", "Paine")]
    for c in captions:
        CAPTIONS[c] = c.replace("A photo of", "A daytime photograph of")
    shards = write_shards(tmp_path / "in", captions, [png_bytes(seed=i) for i in range(len(captions))])
    runs = []
    for name in ("a", "b"):
        with scripted_teacher() as url:
            recaption.run(str(shards), str(tmp_path / name), teacher=url,
                          overrides={"engine.name": "local", "engine.workers": 0, "stages.1.ratio": 0.5})
        runs.append({k: v["caption_source"] for k, v in samples(tmp_path / name).items()})
    assert runs[0] == runs[1]  # the same keys and seed draw the same captions
    assert set(runs[0].values()) == {"original", "recaption"}  # both kinds at ratio 0.5 over 8 samples


def test_an_image_folder_is_decoded_before_the_teacher_sees_it(tmp_path):
    """A corrupt image is an error row with decode's reason and is never sent; a PNG is stored as .png, a JPEG as
    .jpg; a 16-bit PNG is stored as its 8-bit view."""
    import numpy as np

    folder = tmp_path / "in"
    folder.mkdir()
    deep = io.BytesIO()
    Image.fromarray((np.arange(64 * 96, dtype=np.uint16).reshape(64, 96) * 10), mode="I;16").save(deep, format="PNG")
    assert Image.open(io.BytesIO(deep.getvalue())).mode == "I;16"
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(png_bytes(size=(96, 64), seed=3))).save(jpeg, format="JPEG", quality=90)
    captions = {"good.png": ORIGINAL, "photo.jpg": "A blue square drawn by Anna Berg on white paper.",
                "deep.png": "Eine rote Katze schläft auf dem Sofa im Wohnzimmer.",
                "corrupt.jpg": 'A shop sign that reads "OPEN 24".'}
    images = {"good.png": png_bytes(size=(96, 64), seed=1), "photo.jpg": jpeg.getvalue(), "deep.png": deep.getvalue(),
              "corrupt.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 2]}
    for name, data in images.items():
        (folder / name).write_bytes(data)
        (folder / name).with_suffix(".txt").write_text(captions[name])
    out, asked = tmp_path / "out", []
    with scripted_teacher(asked) as url:
        recaption.run(str(folder), str(out), teacher=url, overrides={"engine.name": "local", "engine.workers": 0})
    ledger = {r["source"].rsplit("/", 1)[-1]: r for r in pq.read_table(out / "ledger.parquet").to_pylist()}
    assert ledger["corrupt.jpg"]["status"] == "error" and ledger["corrupt.jpg"]["stage"] == "decode"
    assert ledger["corrupt.jpg"]["reason"] == "truncated"
    assert {ledger[n]["status"] for n in ("good.png", "photo.jpg", "deep.png")} == {"kept"}
    assert len(asked) == 3 and not any(captions["corrupt.jpg"] in text for text in asked)  # never sent
    stored = {}
    for sample in tarfile_samples(sorted(str(p) for p in (out / "shards").glob("*.tar"))):
        s = decode_sample(sample)
        (ext,) = {"png", "jpg"} & set(s)
        stored[s["json"]["caption_original"]] = (ext, s[ext])
    assert set(stored) == {captions[n] for n in ("good.png", "photo.jpg", "deep.png")}
    magic = {"png": b"\x89PNG\r\n\x1a\n", "jpg": b"\xff\xd8\xff"}
    for ext, data in stored.values():
        assert data.startswith(magic[ext])  # the member's extension says what the bytes are
        assert Image.open(io.BytesIO(data)).mode in ("RGB", "RGBA", "L", "P")
    assert stored[ORIGINAL] == ("png", images["good.png"])  # kept as it came
    assert stored[captions["photo.jpg"]] == ("jpg", images["photo.jpg"])
    ext, data = stored[captions["deep.png"]]
    assert Image.open(io.BytesIO(data)).mode != "I;16"  # the 8-bit view the stages judged


# ---------------------------------------------------------------- the CLI against the real tiny model

def test_cli_recaption_against_serve_model(prefect_server, tmp_path):
    shards = write_shards(tmp_path / "in", ["A red bus in Paris.", "A blue square drawn by Anna."],
                          [png_bytes(size=(112, 84), seed=1), png_bytes(size=(112, 84), seed=2)])
    out = tmp_path / "out"
    script = Path(sys.executable).parent / "vlmdata"
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "HF_HUB_OFFLINE": "1"}
    with running_server("--model", "tiny") as url:
        proc = subprocess.run([str(script), "synth", "recaption", "--input", str(shards), "--teacher", url,
                               "--output", str(out), "--engine", "local", "--set", "stages.1.max_tokens=16",
                               "--set", "engine.workers=1"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "recaptions accepted" in proc.stdout
    got = samples(out)
    assert set(got) == {"A red bus in Paris.", "A blue square drawn by Anna."}
    for s in got.values():
        assert s["recaption"] is not None or s["recaption_reason"]  # the teacher answered over real HTTP
        if not s["recaption_ok"]:
            assert s["txt"] == s["caption_original"] and s["recaption_reason"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["recaption"]["samples"] == 2
