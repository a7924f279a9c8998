"""Text from the inputs (file names, paths, keys, captions, reasons, user-given output paths) as it may be shown:
on the console (rich) or in a Prefect markdown artifact. Nothing in it is ever interpreted: a control character is
shown as its escape (an ESC byte as `\\x1b`, a right-to-left override as `\\u202e`), rich markup stays literal text,
a markdown cell stays one cell. Ordinary Unicode (CJK, accents, emoji) is left as it is."""

from __future__ import annotations

import re

from rich.markup import escape
from rich.text import Text

# C0 controls, DEL, C1 controls; bidi marks, embeddings, overrides and isolates (U+061C, U+200E-F, U+202A-E,
# U+2066-9); the line and paragraph separators; lone surrogates (undecodable bytes of a file name, which a
# console could not even encode).
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# Markdown and HTML that could end a table cell or start a construct inside one. An underscore inside a word
# (`caption_empty`) starts nothing in CommonMark and stays as it is, so reasons read as they are written.
_MARKDOWN = re.compile(r"[\\`*\[\]()|~!#<>&]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


def _escaped(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def _escaped_but_newline(match: re.Match[str]) -> str:
    return "\n" if match.group() == "\n" else repr(match.group())[1:-1]


def visible(text: object, multiline: bool = False) -> str:
    """`str(text)` with every control character shown as its escape, as repr would write it (`\\x1b`, `\\n`,
    `\\u202e`); ordinary Unicode stays. For plain-text output (no markup interpreted). `multiline`: keep line
    feeds (an error message of several lines, e.g. a validation error; `\\r` and the rest still shown)."""
    return _HIDDEN.sub(_escaped_but_newline if multiline else _escaped, str(text))


def display_text(text: object, multiline: bool = False) -> str:
    """`visible(text)` escaped for rich markup: to put input text into a markup string printed by rich
    (`console.print(f"[red]error:[/red] {display_text(path)}")`). Print it on a console with `emoji=False`
    (rich would turn `:smile:` into an emoji; markup escaping cannot stop that). As with rich's `escape`, a trailing
    backslash is doubled so that a closing tag may follow it (followed by plain text, it shows as two)."""
    return escape(visible(text, multiline))


def display_cell(text: object, style: str = "") -> Text:
    """`visible(text)` as a rich Text (a table cell or title): never read as markup or emoji codes, on any console."""
    return Text(visible(text), style=style)


def markdown_cell(text: object) -> str:
    """`visible(text)` for a markdown table cell (a Prefect artifact): `|`, markdown punctuation and backslashes
    escaped, `<`, `>`, `&` as HTML entities; one line (a newline shows as `\\n`)."""
    return _MARKDOWN.sub(lambda m: _ENTITIES.get(m.group(), "\\" + m.group()), visible(text))
