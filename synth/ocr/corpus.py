"""Text corpora for rendered documents: paragraphs of real prose read from text files, deterministic by seed.

The default corpus is text no one here wrote, from Debian packages: the Python documentation's reST sources
(python3-doc, English) and the Debian FAQ in Simplified Chinese (debian-faq-zh-cn)."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from pathlib import Path

from filters.heuristics import normalize_caption

DEFAULT_CORPUS: tuple[str, ...] = (
    "/usr/share/doc/python3.11/html/_sources/tutorial",
    "/usr/share/doc/python3.11/html/_sources/faq",
    "/usr/share/doc/python3.11/html/_sources/howto",
    "/usr/share/doc/debian/FAQ/debian-faq.zh-cn.txt.gz",
)
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".gz")

_MARKUP = re.compile(r":[a-z:]+:`([^`<]*?)(?:\s*<[^>]*>)?`|``([^`]*)``|\*\*([^*]*)\*\*|`([^`<]*?)(?:\s*<[^>]*>)?`_*")
_RULE_CHARS = set("=-~^*#+`'\".")
_NOT_PROSE = ("..", "*", "+", "#", "|", ">>>", "-", "=")
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")


class CorpusError(ValueError):
    """A corpus with no usable text: the run stops before it starts, naming the paths and what to install."""


def is_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def _files(paths: Iterable[str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(f for f in path.rglob("*") if f.is_file() and f.name.endswith(TEXT_SUFFIXES)))
        elif path.is_file():
            out.append(path)
    return out


def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def _join(lines: list[str]) -> str:
    """Re-flow a wrapped paragraph: CJK lines join without a space, others with one."""
    text = ""
    for line in lines:
        if text and not (is_cjk(text[-1]) and is_cjk(line[:1])):
            text += " "
        text += line
    return text


def drawable(text: str) -> str:
    """Input text as a sample's label and its render agree on it: the caption normaliser's (NFC, control and format
    characters removed, every whitespace run one space). A rendered image cannot show an ESC or a zero-width
    character, so its ground truth must not hold one."""
    return normalize_caption(text)


def drawable_markup(text: str) -> str:
    """`drawable` for Markdown/LaTeX sources, whose layout is markup: spaces, tabs and line breaks stay as they are;
    every run of other characters goes through the caption normaliser (control characters dropped, other
    whitespace such as a form feed or a no-break space one space)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"[^ \t\n]+", lambda m: normalize_caption(m.group()), text)


def _clean(text: str) -> str:
    text = _MARKUP.sub(lambda m: next(g for g in m.groups() if g is not None), text)
    return drawable(text.replace("\ufffd", ""))


def paragraphs(text: str, min_chars: int) -> list[str]:
    """Prose paragraphs of a plain-text or reST file: blank-line separated blocks, without directives, code blocks,
    headings, tables and lists of links."""
    out: list[str] = []
    block: list[str] = []
    in_literal = False  # inside the indented body of a `::` literal block or a directive (code, not prose)
    for raw in [*text.splitlines(), ""]:
        stripped = raw.strip()
        if not stripped:
            if block:
                para = _clean(_join(block))
                if len(para) >= min_chars and _prose(para):
                    out.append(_literal_colon(para))
                in_literal = block[-1].endswith("::")
                block = []
            continue
        if in_literal and raw[:1] in (" ", "\t") and not block:
            continue
        in_literal = False
        if set(stripped) <= _RULE_CHARS:
            block = []  # a heading's underline: the block above it was a title
            continue
        if stripped.startswith(_NOT_PROSE):
            in_literal = stripped.endswith("::") or stripped.startswith("..")
            block = []
            continue
        block.append(stripped)
    return out


def _literal_colon(para: str) -> str:
    """reST's `text::` shows as `text:` and `text ::` as `text`."""
    if para.endswith(" ::"):
        return para[:-3]
    return para[:-1] if para.endswith("::") else para


def _prose(para: str) -> bool:
    """Mostly letters and spaces: sentences, not code, tables or file listings."""
    letters = sum(ch.isalpha() or ch.isspace() for ch in para)
    return letters >= 0.8 * len(para) and not para.startswith(("http", "/"))


def load_corpus(paths: Iterable[str], min_chars: int = 40) -> list[str]:
    """Every prose paragraph of the text files under `paths`, in a stable order (sorted files, file order)."""
    paths = list(paths)
    out: list[str] = []
    for f in _files(paths):
        out.extend(paragraphs(_read(f), min_chars))
    if not out:
        raise CorpusError(
            f"no prose paragraphs found under {paths}: give text files (corpus: in the recipe) or install the "
            "Debian packages python3-doc and debian-faq-zh-cn for the default corpus"
        )
    return out
