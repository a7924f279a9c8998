"""`vlmdata export OUT --format llamafactory|verl --output DIR`: an output folder's SFT shards as LLaMA-Factory's
ShareGPT-style JSON (+ images as files and the dataset_info.json entry), or its RL prompt set in verl's
RLHFDataset Parquet layout. Shards are read by the project's one sample codec."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.parquet as pq
import typer

from pipelines import storage
from pipelines.codec import decode_sample, tarfile_samples

MARKER = ".vlmdata-export"
IMAGE = "<image>"
_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
VERL_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
VERL_SCHEMA = pa.schema([
    pa.field("data_source", pa.string()),
    pa.field("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    pa.field("images", pa.list_(VERL_IMAGE)),
    pa.field("ability", pa.string()),
    pa.field("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
    pa.field("extra_info", pa.struct([("index", pa.int64()), ("id", pa.string()), ("key", pa.string()),
                                      ("question", pa.string()), ("answer", pa.string()),
                                      ("pass_at_k", pa.float32()), ("difficulty", pa.string()),
                                      ("split", pa.string())])),
])


class ExportError(ValueError):
    """An export that cannot be made; the message says why and what to do."""


def _prepare(dest: Path) -> None:
    """A new or empty folder, or one a previous export wrote (its marker): nothing else is overwritten."""
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"--output {dest} is a file; pass a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / MARKER).is_file():
        raise ExportError(f"--output {dest} holds files vlmdata did not write; pass a new or empty folder")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MARKER).write_text("This folder is a vlmdata export.\n")


def _text_of(content: Any) -> tuple[str, int]:
    """A message's content as LLaMA-Factory/verl text: `<image>` where each image part was, and the image count."""
    if isinstance(content, str):
        return content, 0
    parts, images = [], 0
    for p in content or []:
        if isinstance(p, dict) and p.get("type") == "image":
            parts.append(IMAGE)
            images += 1
        elif isinstance(p, dict) and p.get("type") == "text":
            parts.append(p.get("text") or "")
    return "".join(parts), images


def _shards(out: Path) -> list[str]:
    shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    if not shards:
        raise ExportError(f"{out}/shards holds no .tar shards: pass an output folder of a vlmdata run")
    return shards


def export_llamafactory(out: Path, dest: Path, name: str) -> dict[str, Any]:
    """DIR/NAME.json (`messages` with `<image>` placeholders, `images` paths relative to DIR), DIR/images/…, and
    DIR/dataset_info.json registering NAME (formatting sharegpt, OpenAI-style role/content tags)."""
    _prepare(dest)
    (dest / "images").mkdir(exist_ok=True)
    records: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for n, raw in enumerate(tarfile_samples(_shards(out))):
        sample = decode_sample(raw)
        meta = sample.get("json") or {}
        messages = meta.get("messages")
        if not messages:
            skipped["no_messages"] = skipped.get("no_messages", 0) + 1
            continue
        turns, wanted = [], 0
        for m in messages:
            text, images = _text_of(m.get("content"))
            turns.append({"role": m.get("role"), "content": text})
            wanted += images
        ext = "png" if "png" in sample else "jpg" if "jpg" in sample else None
        if wanted and (ext is None or wanted != 1):
            skipped["images_missing"] = skipped.get("images_missing", 0) + 1  # the sample stores one image
            continue
        key = str(sample.get("__key__", ""))
        stem = key if _SAFE.match(key) else f"sample-{n:08d}"  # member names never become paths as they are
        record: dict[str, Any] = {"messages": turns}
        if wanted:
            rel = f"images/{stem}.{ext}"
            (dest / rel).write_bytes(sample[ext])
            record["images"] = [rel]
        records.append(record)
    (dest / f"{name}.json").write_text(json.dumps(records, ensure_ascii=False, indent=1))
    info = {name: {"file_name": f"{name}.json", "formatting": "sharegpt",
                   "columns": {"messages": "messages", "images": "images"},
                   "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                            "assistant_tag": "assistant", "system_tag": "system"}}}
    info_path = dest / "dataset_info.json"
    existing = json.loads(info_path.read_text()) if info_path.is_file() else {}
    info_path.write_text(json.dumps({**existing, **info}, indent=1))
    return {"samples": len(records), "skipped": skipped, "file": str(dest / f"{name}.json")}


def export_verl(out: Path, dest: Path, name: str, split: str = "train") -> dict[str, Any]:
    """DIR/NAME.parquet in verl's RLHFDataset layout from OUT/rl_prompts.parquet (a distillation run's RL set):
    data_source, prompt (a chat list; `<image>` per image), images ({bytes, path}), ability (the domain),
    reward_model {style: rule, ground_truth}, extra_info (index, id, pass@k, difficulty, …)."""
    from synth.distill.rlset import RL_FILE

    source = out / RL_FILE
    if not source.is_file():
        raise ExportError(f"{source} does not exist: export --format verl needs the output of `vlmdata synth distill`")
    _prepare(dest)
    rows = []
    for i, r in enumerate(pq.read_table(source).to_pylist()):
        images = r["images"] or []
        question = r["question"] or ""
        content = IMAGE * len(images) + question if IMAGE not in question else question
        rows.append({
            "data_source": f"vlmdata/{r['dataset'] or name}",
            "prompt": [{"role": "user", "content": content}],
            "images": [{"bytes": im["bytes"], "path": im.get("path")} for im in images],
            "ability": r["domain"],
            "reward_model": {"style": "rule", "ground_truth": r["answer"]},
            "extra_info": {"index": i, "id": r["id"], "key": r["key"], "question": question, "answer": r["answer"],
                           "pass_at_k": r["pass_at_k"], "difficulty": r["difficulty"], "split": split},
        })
    storage.write_parquet_atomic(str(dest / f"{name}.parquet"), pa.Table.from_pylist(rows, schema=VERL_SCHEMA))
    return {"prompts": len(rows), "file": str(dest / f"{name}.parquet")}


def export(
    out: Annotated[Path, typer.Argument(help="Output folder of a vlmdata run (shards/, rl_prompts.parquet).")],
    format: Annotated[str, typer.Option("--format", help="llamafactory (SFT shards) or verl (RL prompt set).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Export folder (new, empty or a previous export).")],
    name: Annotated[str, typer.Option(help="Dataset name (file name and dataset_info.json key).")] = "vlmdata",
) -> None:
    """Export a run for LLaMA-Factory (ShareGPT-style JSON + dataset_info.json) or verl (RLHFDataset Parquet)."""
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
    except ExportError as exc:
        console.print(f"[red]error:[/red] {display_text(exc)}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    console.print(display_text(json.dumps(report)), highlight=False)  # JSON is ASCII
