"""`vlmdata export OUT --format llamafactory|verl --output DIR`: an output folder's SFT shards as LLaMA-Factory's
ShareGPT-style JSON (+ images as files and the dataset_info.json entry), or its RL prompt set in verl's
RLHFDataset Parquet layout. Shards are read by the project's one sample codec.

Placeholders. Both consumers find images by a literal text token: LLaMA-Factory counts `<image>`, `<video>` and
`<audio>` in every message (`str.count` of IMAGE/VIDEO/AUDIO_PLACEHOLDER in mm_plugin) and refuses a sample whose
counts differ from its images/videos/audios; verl's RLHFDataset splits each prompt message on `<image>|<video>`
and turns every match into an image/video slot. So an exported sample holds one `<image>` per image part, where
the part is in its message, and no other occurrence of these tokens. A sample whose own text contains one (an OCR
page of HTML, a question about the tag) is skipped and counted (`literal_image_token`, `literal_video_token`,
`literal_audio_token`): rewriting the text would change what the model is taught to read or write, and left as it
is the consumer would read it as a placeholder. Every record passes a placeholder count check before it is
written, so a mismatch aborts the export rather than reaching a file.

The folder. The run is checked before anything is created; the export is staged in `DIR/.vlmdata-export.partial`
and moved into place only when it holds at least one sample. `DIR/.vlmdata-export` records the files the export
wrote; a re-export removes exactly those (and nothing it did not write), so the folder holds the new export alone.
A failed export leaves DIR as it was (a new DIR is not created)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.parquet as pq
import typer

from pipelines import storage
from pipelines.codec import SampleDecodeError, ShardReadError, decode_sample, tarfile_samples

MARKER = ".vlmdata-export"
PARTIAL = ".vlmdata-export.partial"
IMAGE, VIDEO, AUDIO = "<image>", "<video>", "<audio>"
LLAMAFACTORY_TOKENS = (IMAGE, VIDEO, AUDIO)  # LLaMA-Factory's IMAGE/VIDEO/AUDIO_PLACEHOLDER defaults, all counted
VERL_TOKENS = (IMAGE, VIDEO)  # verl's RLHFDataset: re.split("(<image>|<video>)", content)
_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")  # a sample's images as the trainer reads them (train/data/encode.py)
NUMBERED_IMAGE = re.compile(r"^(\d+)\.(jpg|jpeg|png|webp)$")
EXAMPLES = 5  # sample keys shown per skip reason
VERL_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
VERL_SCHEMA = pa.schema([
    pa.field("data_source", pa.string()),
    pa.field("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    pa.field("images", pa.list_(VERL_IMAGE)),
    pa.field("ability", pa.string()),
    pa.field("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
    pa.field("extra_info", pa.struct([("index", pa.int64()), ("id", pa.string()), ("key", pa.string()),
                                      ("question", pa.string()), ("answer", pa.string()),
                                      # the verifier domain: verl passes extra_info, not ability, to compute_score
                                      ("domain", pa.string()),
                                      ("pass_at_k", pa.float32()), ("difficulty", pa.string()),
                                      ("split", pa.string())])),
])


class ExportError(ValueError):
    """An export that cannot be made; the message says why and what to do. Nothing was written."""


class NothingToExport(ExportError):
    """The run was read but no sample could be exported; the message gives the skip report."""


class PlaceholderMismatch(AssertionError):
    """A record about to be written whose placeholders do not match its images: a bug, never written."""


class _Skip(Exception):
    """A sample the export leaves out; args = (reason,)."""


# --- placeholders ----------------------------------------------------------------------------------------------

def _literal_reason(token: str) -> str:
    return f"literal_{token.strip('<>')}_token"


def check_placeholders(contents: list[str], images: int, tokens: tuple[str, ...], key: str) -> None:
    """The self-check every record passes before it is written: exactly `images` `<image>` in `contents` (the
    texts the consumer scans) and none of the other `tokens`. Raises, whatever Python's -O says."""
    counts = {t: sum(c.count(t) for c in contents) for t in tokens}
    wanted = {t: images if t == IMAGE else 0 for t in tokens}
    if counts != wanted:
        raise PlaceholderMismatch(f"sample {key!r}: placeholders {counts} for {images} image(s); not written")


def _sample_images(sample: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(extension, bytes) of a sample's images in order: `jpg|png|…` first, then `N.jpg|png|…` by N."""
    plain = [(k, sample[k]) for k in IMAGE_KEYS if isinstance(sample.get(k), bytes)][:1]
    numbered = sorted((int(m.group(1)), m.group(2), v) for k, v in sample.items()
                      if isinstance(k, str) and isinstance(v, bytes) and (m := NUMBERED_IMAGE.match(k)))
    return plain + [(ext, v) for _, ext, v in numbered]


def _turns(messages: Any, n_images: int) -> list[dict[str, str]]:
    """HF chat messages as LLaMA-Factory turns: each content a string with `<image>` where each image part was.
    Messages without image parts get the sample's images in front of the first user turn, as the trainer puts
    them. Raises _Skip for what cannot be exported truthfully."""
    if not isinstance(messages, list) or not messages:
        raise _Skip("no_messages")
    turns: list[dict[str, str]] = []
    slots: list[int] = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _Skip("bad_messages")
        content = m.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise _Skip("bad_messages")
        text, here = [], 0
        for p in parts:
            kind = p.get("type") if isinstance(p, dict) else None
            if kind == "image":
                text.append(IMAGE)
                here += 1
            elif kind == "text" and isinstance(p.get("text"), str):
                text.append(p["text"])
            elif kind == "video":
                raise _Skip("video_unsupported")  # the shards store no videos (the trainer skips these too)
            else:
                raise _Skip("bad_messages")
        joined = "".join(text)
        # the message's own text (text parts, and any two joined) must not spell a token: occurrences of
        # `<image>` never overlap, so any beyond the image parts lie wholly in the text
        for token in LLAMAFACTORY_TOKENS:
            if joined.count(token) != (here if token == IMAGE else 0):
                raise _Skip(_literal_reason(token))
        turns.append({"role": m["role"], "content": joined})
        slots.append(here)
    if sum(slots) == 0 and n_images:
        user = next((t for t in turns if t["role"] == "user"), None)
        if user is None:
            raise _Skip("image_count")
        user["content"] = IMAGE * n_images + user["content"]
    elif sum(slots) != n_images:
        raise _Skip("image_count")  # image parts and stored images differ
    return turns


# --- the folder ------------------------------------------------------------------------------------------------

def _check_run_and_dest(out: Path, dest: Path, needs: str) -> None:
    if not out.is_dir():
        raise ExportError(f"{out} is not a folder: pass the output folder of a vlmdata run (it holds {needs})")
    run, target = out.resolve(), dest.resolve()
    if target == run or run in target.parents:
        raise ExportError(f"--output {dest} is inside the run folder {out}: a run's folder holds only what the run "
                          "wrote (reruns read it); export to a folder outside it")
    if target in run.parents:
        raise ExportError(f"the run folder {out} is inside --output {dest}: export to a folder outside the run")


def _owned_path(rel: Any) -> bool:
    """A file name an export may have recorded: relative, inside the folder, not the marker or the staging folder."""
    if not isinstance(rel, str) or not rel or "\\" in rel:
        return False
    p = PurePosixPath(rel)
    return (not p.is_absolute() and all(part not in ("", ".", "..") for part in p.parts)
            and p.parts[0] not in (MARKER, PARTIAL))


def _previous(dest: Path) -> set[str]:
    """The files the previous export in `dest` recorded (none for a new or empty folder). Refuses a file, a
    folder vlmdata did not write, and an export whose marker lists no files (one that cannot be cleaned)."""
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"--output {dest} is a file; pass a folder")
    if not dest.is_dir():
        return set()
    entries = {p.name for p in dest.iterdir()}
    if MARKER not in entries:
        if entries - {PARTIAL}:  # a killed export leaves its staging folder only
            raise ExportError(f"--output {dest} holds files vlmdata did not write; pass a new or empty folder")
        return set()
    try:
        marker = json.loads((dest / MARKER).read_text())
        files = marker["files"]
        if not isinstance(files, list):
            raise TypeError
    except (OSError, ValueError, TypeError, KeyError):
        raise ExportError(f"--output {dest} is an export whose {MARKER} does not list its files (an older vlmdata "
                          "wrote it): remove the folder or pass a new one") from None
    bad = [f for f in files if not _owned_path(f)]
    if bad:
        raise ExportError(f"{dest}/{MARKER} lists {bad[0]!r}, not a file of the folder: remove the folder or pass "
                          "a new one")
    return set(files)


class _Staged:
    """The export written into DEST/.vlmdata-export.partial, then moved into place (`commit`), or removed with
    every folder it created (`discard`)."""

    def __init__(self, dest: Path, meta: dict[str, Any]) -> None:
        self.dest, self.meta = dest, meta
        self.previous = _previous(dest)
        self.created: list[Path] = []  # folders made for DEST, deepest first
        p = dest
        while not p.exists():
            self.created.append(p)
            p = p.parent
        self.dir = dest / PARTIAL
        try:
            dest.mkdir(parents=True, exist_ok=True)
            if self.dir.exists():
                shutil.rmtree(self.dir)  # a killed export's
            self.dir.mkdir()
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        for d in self.created:
            try:
                d.rmdir()
            except OSError:
                break

    def _write_marker(self, files: list[str]) -> None:
        body = {"note": "This folder is a vlmdata export. A re-export removes the files listed here, and only these.",
                **self.meta, "files": files}
        storage.write_atomic(str(self.dest / MARKER), json.dumps(body, indent=1).encode())

    def commit(self) -> int:
        """Move the staged files into DEST, remove the previous export's other files; return how many."""
        new = sorted(p.relative_to(self.dir).as_posix() for p in self.dir.rglob("*") if p.is_file())
        for rel in new:
            if rel not in self.previous and os.path.lexists(self.dest / rel):
                raise ExportError(f"{self.dest / rel} exists and no previous export wrote it: move it away or pass "
                                  "a new folder")
        stale = sorted(self.previous - set(new))
        self._write_marker(sorted(self.previous | set(new)))  # a kill from here on leaves only recorded files
        removed = 0
        for rel in stale:
            path = self.dest / rel
            if path.is_symlink() or path.is_file():
                path.unlink()
                removed += 1
        for rel in new:
            (self.dest / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.dir / rel, self.dest / rel)
        self._write_marker(new)
        shutil.rmtree(self.dir)
        for rel in stale:  # folders the removal emptied (a previous export's images/)
            parent = (self.dest / rel).parent
            while parent != self.dest:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent
        return removed


def _staged_export(dest: Path, meta: dict[str, Any], write: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    staged = _Staged(dest, meta)
    try:
        report = write(staged.dir)
        report["removed_previous"] = staged.commit()
    except BaseException:
        staged.discard()
        raise
    return report


def _skip_report(skipped: dict[str, int], examples: dict[str, list[str]]) -> str:
    return ", ".join(f"{r}: {n} (e.g. {', '.join(examples[r])})" for r, n in sorted(skipped.items()))


# --- the formats -----------------------------------------------------------------------------------------------

def _shards(out: Path) -> list[str]:
    shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    if not shards:
        raise ExportError(f"{out}/shards holds no .tar shards: pass an output folder of a vlmdata run")
    return shards


def export_llamafactory(out: Path, dest: Path, name: str) -> dict[str, Any]:
    """DIR/NAME.json (`messages` with `<image>` placeholders, `images` paths relative to DIR), DIR/images/…, and
    DIR/dataset_info.json registering NAME (formatting sharegpt, OpenAI-style role/content tags)."""
    if name == "dataset_info":
        raise ExportError("--name dataset_info: LLaMA-Factory's dataset_info.json is written beside NAME.json")
    _check_run_and_dest(out, dest, "shards/*.tar")
    shards = _shards(out)

    def write(stage: Path) -> dict[str, Any]:
        records: list[dict[str, Any]] = []
        skipped: dict[str, int] = {}
        examples: dict[str, list[str]] = {}
        stems: set[str] = set()
        n_images = 0
        try:
            for n, raw in enumerate(tarfile_samples(shards)):
                key = str(raw.get("__key__", ""))
                try:
                    try:
                        sample = decode_sample(raw)
                    except SampleDecodeError:
                        raise _Skip("undecodable") from None
                    meta = sample.get("json")
                    images = _sample_images(sample)
                    turns = _turns(meta.get("messages") if isinstance(meta, dict) else None, len(images))
                except _Skip as s:
                    reason = s.args[0]
                    skipped[reason] = skipped.get(reason, 0) + 1
                    if len(examples.setdefault(reason, [])) < EXAMPLES:
                        examples[reason].append(key)
                    continue
                check_placeholders([t["content"] for t in turns], len(images), LLAMAFACTORY_TOKENS, key)
                record: dict[str, Any] = {"messages": turns}
                if images:
                    stem = key if _SAFE.match(key) and "." not in key else f"sample-{n:08d}"  # never a path as is
                    while stem in stems:  # a key twice (two shards): the second's images keep their own files
                        stem = f"{stem}-{n}"
                    stems.add(stem)
                    (stage / "images").mkdir(exist_ok=True)
                    rels = [f"images/{stem}.{ext}" if len(images) == 1 else f"images/{stem}.{i}.{ext}"
                            for i, (ext, _) in enumerate(images)]
                    for rel, (_, data) in zip(rels, images, strict=True):
                        (stage / rel).write_bytes(data)
                    record["images"] = rels
                    n_images += len(rels)
                records.append(record)
        except ShardReadError as exc:
            raise ExportError(f"{exc}: the run's shards cannot be read to their end; nothing was exported") from None
        if not records:
            why = _skip_report(skipped, examples) or "the shards hold no samples"
            raise NothingToExport(f"{out}: no sample could be exported ({why}); nothing was written")
        (stage / f"{name}.json").write_text(json.dumps(records, ensure_ascii=False, indent=1))
        info = {name: {"file_name": f"{name}.json", "formatting": "sharegpt",
                       "columns": {"messages": "messages", "images": "images"},
                       "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                "assistant_tag": "assistant", "system_tag": "system"}}}
        (stage / "dataset_info.json").write_text(json.dumps(info, indent=1))
        return {"samples": len(records), "images": n_images, "skipped": skipped, "skipped_examples": examples,
                "file": str(dest / f"{name}.json")}

    return _staged_export(dest, {"format": "llamafactory", "name": name, "run": str(out)}, write)


def export_verl(out: Path, dest: Path, name: str, split: str = "train") -> dict[str, Any]:
    """DIR/NAME.parquet in verl's RLHFDataset layout from OUT/rl_prompts.parquet (a distillation run's RL set):
    data_source, prompt (a chat list; `<image>` per image, in front of the question), images ({bytes, path}),
    ability (the domain), reward_model {style: rule, ground_truth}, extra_info (index, id, domain, pass@k, …)."""
    from synth.distill.rlset import RL_FILE

    _check_run_and_dest(out, dest, f"{RL_FILE}, written by `vlmdata synth distill`")
    source = out / RL_FILE
    if not source.is_file():
        raise ExportError(f"{source} does not exist: export --format verl needs the output of `vlmdata synth distill`")

    def write(stage: Path) -> dict[str, Any]:
        rows = []
        skipped: dict[str, int] = {}
        examples: dict[str, list[str]] = {}
        for r in pq.read_table(source).to_pylist():
            images = r["images"] or []
            question = r["question"] or ""
            literal = next((t for t in VERL_TOKENS if t in question), None)
            if literal is not None:
                reason = _literal_reason(literal)
                skipped[reason] = skipped.get(reason, 0) + 1
                if len(examples.setdefault(reason, [])) < EXAMPLES:
                    examples[reason].append(str(r["id"] if r["id"] is not None else r["key"]))
                continue
            content = IMAGE * len(images) + question  # as the teacher saw it: the images, then the question
            check_placeholders([content], len(images), VERL_TOKENS, str(r["key"]))
            rows.append({
                "data_source": f"vlmdata/{r['dataset'] or name}",
                "prompt": [{"role": "user", "content": content}],
                "images": [{"bytes": im["bytes"], "path": im.get("path")} for im in images],
                "ability": r["domain"],
                "reward_model": {"style": "rule", "ground_truth": r["answer"]},
                "extra_info": {"index": len(rows), "id": r["id"], "key": r["key"], "question": question,
                               "answer": r["answer"], "domain": r["domain"], "pass_at_k": r["pass_at_k"],
                               "difficulty": r["difficulty"], "split": split},
            })
        if not rows:
            why = _skip_report(skipped, examples) or "the RL prompt set is empty"
            raise NothingToExport(f"{source}: no prompt could be exported ({why}); nothing was written")
        storage.write_parquet_atomic(str(stage / f"{name}.parquet"), pa.Table.from_pylist(rows, schema=VERL_SCHEMA))
        return {"prompts": len(rows), "skipped": skipped, "skipped_examples": examples,
                "file": str(dest / f"{name}.parquet")}

    return _staged_export(dest, {"format": "verl", "name": name, "run": str(out)}, write)


def export(
    out: Annotated[Path, typer.Argument(help="Output folder of a vlmdata run (shards/, rl_prompts.parquet).")],
    format: Annotated[str, typer.Option("--format", help="llamafactory (SFT shards) or verl (RL prompt set).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Export folder (new, empty or a previous export, "
                                                                "which is replaced); not inside the run.")],
    name: Annotated[str, typer.Option(help="Dataset name (file name and dataset_info.json key).")] = "vlmdata",
) -> None:
    """Export a run for LLaMA-Factory (ShareGPT-style JSON + dataset_info.json) or verl (RLHFDataset Parquet).
    Samples that cannot be exported truthfully (a literal <image> in their text, images that do not match their
    image parts) are skipped and counted; an export with no sample fails (exit 1) and writes nothing."""
    from rich.console import Console

    from orchestration.display import display_text

    console = Console(emoji=False)  # paths in the messages and the report: escaped (display_text), no :emoji: codes
    try:
        if not _SAFE.match(name):
            raise ExportError(f"--name {name!r}: use letters, digits, '.', '_' or '-'")
        if format == "llamafactory":
            report = export_llamafactory(out, output, name)
        elif format == "verl":
            report = export_verl(out, output, name)
        else:
            raise ExportError(f"--format {format!r}: use llamafactory or verl")
    except NothingToExport as exc:
        console.print(f"[red]error:[/red] {display_text(exc)}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    except ExportError as exc:
        console.print(f"[red]error:[/red] {display_text(exc)}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    except OSError as exc:  # a full disk, no permission: the staged files are gone, DEST is as it was
        console.print(f"[red]error:[/red] {display_text(exc)}; nothing was exported", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    console.print(display_text(json.dumps(report)), soft_wrap=True, highlight=False)  # JSON is ASCII, one line
    if report["skipped"]:
        why = _skip_report(report["skipped"], report["skipped_examples"])
        console.print(f"[yellow]warning:[/yellow] skipped {display_text(why)}", soft_wrap=True, highlight=False)
