"""Input text (file names, paths, keys, reasons, user-given output paths) is shown, never interpreted: no control
character of an input reaches the terminal (an ESC shows as `\\x1b`, a bidi override as `\\u202e`), rich markup in it
stays literal text, and a reason stays one cell of the markdown artifact."""

from __future__ import annotations

import io
import re
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from markdown_it import MarkdownIt
from rich.console import Console
from typer.testing import CliRunner

from orchestration import cli, lineage
from orchestration.cli import app
from orchestration.display import display_cell, display_text, markdown_cell, visible
from orchestration.report import markdown_summary, summary_table
from tests.images import jpeg_bytes

ESC = "\x1b"
ANSI = f"{ESC}[31mANSI"  # an input named like this must not turn the terminal red
MARKUP = "[bold red]x[link=http:e]y"  # nor may this become bold red text with a hyperlink
RLO = "\u202e"  # right-to-left override: would show "gpj.exe" as "exe.jpg"
EMOJI_CODE = ":thumbs_up:"  # rich would print 👍 for it


def _terminal(buf: io.StringIO, **kw) -> Console:
    """A console that renders like a colour terminal (rich writes its own ESC sequences for its styles)."""
    kw.pop("width", None)
    return Console(file=buf, force_terminal=True, color_system="truecolor", width=250, **kw)


def _plain(out: str) -> str:
    """The text without rich's own colours (SGR sequences; the highlighter may colour brackets and URLs)."""
    return re.sub(f"{ESC}\\[[0-9;]*m", "", out)


def _assert_shown_not_interpreted(out: str) -> None:
    assert ANSI not in out and RLO not in out  # the raw bytes never reach the terminal
    assert f"{ESC}]8;" not in out  # no hyperlink (OSC 8) was made of the markup
    plain = _plain(out)
    assert ESC not in plain  # nothing but rich's own colours
    assert "\\x1b[31mANSI" in plain and "\\u202e" in plain  # the controls are shown as escapes
    assert MARKUP in plain  # the markup is literal text


# --- the helpers ------------------------------------------------------------------------------------------------


def test_visible_shows_controls_as_escapes_and_keeps_ordinary_unicode():
    assert visible(f"{ANSI}.jpg") == "\\x1b[31mANSI.jpg"
    assert visible("a\nb\r\tc\x00\x7f\x85\x9b") == "a\\nb\\r\\tc\\x00\\x7f\\x85\\x9b"
    assert visible(f"{RLO}gpj.exe\u2066\u2069\u202a") == "\\u202egpj.exe\\u2066\\u2069\\u202a"
    assert visible("\udcff.jpg") == "\\udcff.jpg"  # an undecodable byte of a file name (surrogateescape)
    assert visible("图片 café Ωmega 👍 naïve") == "图片 café Ωmega 👍 naïve"
    assert visible("a\nb", multiline=True) == "a\nb" and visible("a\r\nb", multiline=True) == "a\\r\nb"
    assert visible(Path("/tmp/x")) == "/tmp/x"


def test_display_text_renders_as_the_literal_text_on_a_terminal():
    buf = io.StringIO()
    text = f"{ANSI}.jpg {MARKUP} {RLO}gpj.exe trailing\\"
    _terminal(buf, emoji=False).print(f"[red]error:[/red] {display_text(text)}")
    out = buf.getvalue()
    _assert_shown_not_interpreted(out)
    assert "trailing\\" in out  # a trailing backslash is text too (it does not escape rich's closing tag)
    cell = io.StringIO()
    _terminal(cell).print(display_cell(f"{EMOJI_CODE} {MARKUP} {ANSI}"))  # a Text: no emoji even where enabled
    assert EMOJI_CODE in cell.getvalue() and MARKUP in cell.getvalue() and ANSI not in cell.getvalue()


def test_markdown_cell_keeps_one_cell_and_no_html():
    md = MarkdownIt("commonmark").enable("table")
    row = markdown_cell("a|b\nc <script>alert(1)</script> *x* [l](http://e) `c` & \\")
    html = md.render(f"| h |\n|---|\n| {row} |\n")
    assert html.count("<td>") == 1 and "<script>" not in html and "<em>" not in html and "<a " not in html
    assert "<code>" not in html
    cell = re.search(r"<td>(.*)</td>", html).group(1)
    assert cell == "a|b\\nc &lt;script&gt;alert(1)&lt;/script&gt; *x* [l](http://e) `c` &amp; \\"


# --- the curate summary: console table and Prefect markdown artifact --------------------------------------------

REASON = f"decode_failed:OSError: cannot identify {ANSI}.jpg {MARKUP} {RLO}gpj.exe | {EMOJI_CODE}\nline two"
STATS = {
    "inputs": 3,
    "status": {"kept": 1, "dropped": 1, "error": 1},
    "by_stage": {"decode": {REASON: 1}, f"stage{ESC}[2J{MARKUP}": {"too_small": 1}},
    "stages": [{"stage": f"fan{ESC}[5m", "generated": 2, "rows_in": 1, "children": {"kept": 1, "dropped": 1,
                                                                                       "error": 0}}],
    "shards": {"count": 1, "bytes": 1000, "samples": 1},
}


def test_summary_table_shows_title_stage_and_reason_as_text():
    buf = io.StringIO()
    console = _terminal(buf)  # emoji on, as any console: the table's cells must not depend on the console's settings
    console.print(summary_table(STATS, title=f"curate → /tmp/qa/out/{MARKUP}{ANSI}"))
    out = buf.getvalue()
    _assert_shown_not_interpreted(out)
    assert f"curate → /tmp/qa/out/{MARKUP}\\x1b[31mANSI: 3 inputs" in out
    assert EMOJI_CODE in out and "👍" not in out
    assert "\\nline two" in out  # a reason stays on its row
    assert "stage\\x1b[2J" in out and "fan\\x1b[5m" in out and f"{ESC}[2J" not in out and f"{ESC}[5m" not in out


def test_markdown_summary_escapes_every_cell():
    text = markdown_summary(STATS)
    lines = text.splitlines()
    assert len(lines) == 2 + 3 + 2 + 1 + 1  # header, rule, statuses, two reasons, generated, shards: one line each
    assert ESC not in text and RLO not in text
    html = MarkdownIt("commonmark").enable("table").render(text + "\n")
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    assert len(rows) == len(lines) - 1 and all(r.count("<td>") + r.count("<th>") == 4 for r in rows)
    assert "<strong>" not in html and "<em>" not in html and "<a " not in html
    reason_row = next(r for r in rows if "decode_failed" in r)
    assert "\\x1b[31mANSI.jpg" in reason_row and MARKUP in reason_row and "| :thumbs_up:\\nline two" in reason_row


# --- vlmdata lineage ----------------------------------------------------------------------------------------------


def _ledger(out: Path) -> dict[str, str]:
    out.mkdir(parents=True)
    source = f"/data/in/{ANSI}.jpg {MARKUP} {RLO}gpj.exe"
    rows = [
        {"key": "seed0", "parent": None, "status": "kept", "stage": None, "reason": None, "origin": None,
         "source": source},
        {"key": f"kid{ESC}[1m", "parent": "seed0", "status": "dropped", "stage": f"fan{ESC}[5m",
         "reason": f"bad caption: {ANSI} {MARKUP} {EMOJI_CODE}", "origin": f"gen{MARKUP}", "source": source},
    ]
    pq.write_table(pa.Table.from_pylist(rows), out / "ledger.parquet")
    return rows[1]


def test_lineage_shows_source_key_stage_and_reason_as_text(tmp_path, monkeypatch):
    kid = _ledger(tmp_path / "out")
    buf = io.StringIO()
    monkeypatch.setattr(lineage, "Console", partial(_terminal, buf))  # the verb's own settings, on a terminal
    result = CliRunner().invoke(app, ["lineage", str(tmp_path / "out"), kid["key"]])
    assert result.exit_code == 0, result.output
    out = buf.getvalue()
    _assert_shown_not_interpreted(out)
    assert f"/data/in/\\x1b[31mANSI.jpg {MARKUP}" in out  # the source column
    assert "lineage of kid\\x1b[1m" in out and f"{ESC}[5m" not in out and "fan\\x1b[5m" in out
    assert f"gen{MARKUP}" in out and EMOJI_CODE in out and "👍" not in out
    parent = io.StringIO()
    monkeypatch.setattr(lineage, "Console", partial(_terminal, parent))
    result = CliRunner().invoke(app, ["lineage", str(tmp_path / "out"), "seed0"])
    assert result.exit_code == 0, result.output
    assert "kid\\x1b[1m" in parent.getvalue() and f"kid{ESC}[1m" not in parent.getvalue()  # the children line


def test_lineage_errors_show_the_path_and_key_as_text(tmp_path, monkeypatch):
    _ledger(tmp_path / "out")
    for args in ([str(tmp_path / f"{ANSI}{MARKUP}{RLO}"), "k"], [str(tmp_path / "out"), f"{ANSI}{MARKUP}{RLO}"]):
        buf = io.StringIO()
        monkeypatch.setattr(lineage, "Console", partial(_terminal, buf))
        result = CliRunner().invoke(app, ["lineage", *args])
        assert result.exit_code in (1, 2), result.output
        assert "error:" in buf.getvalue()
        _assert_shown_not_interpreted(buf.getvalue())


# --- `error:` lines of the other verbs, and a real curate run -------------------------------------------------------


@pytest.mark.parametrize("verb", [
    ["curate", "-i", "{bad}", "-o", "{tmp}/out"],
    ["stats", "{bad}"],
    ["export", "{bad}", "--format", "verl", "-o", "{tmp}/exp"],
])
def test_error_lines_for_bad_inputs_show_the_path_as_text(verb, tmp_path, monkeypatch):
    bad = str(tmp_path / f"{ANSI} {MARKUP} {RLO} {EMOJI_CODE}")
    args = [a.format(bad=bad, tmp=tmp_path) for a in verb]
    result = CliRunner().invoke(app, args)  # the verbs' own consoles, not a terminal: every ESC would be the input's
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and ESC not in result.output and RLO not in result.output
    assert "\\x1b[31mANSI" in result.output and MARKUP in result.output and EMOJI_CODE in result.output
    if verb[0] == "curate":  # and on a colour terminal
        buf = io.StringIO()
        monkeypatch.setattr(cli, "console", _terminal(buf, emoji=False))
        assert CliRunner().invoke(app, args).exit_code == 2
        _assert_shown_not_interpreted(buf.getvalue())


def test_curate_summary_title_and_lineage_of_a_real_run(tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    for i, name in enumerate([ANSI, MARKUP, "plain"]):
        (src / f"{name}.jpg").write_bytes(jpeg_bytes((300, 240), seed=i))
        (src / f"{name}.txt").write_text(f"a photo of thing number {i}")
    out = tmp_path / f"out{MARKUP}{ANSI}"
    buf = io.StringIO()
    monkeypatch.setattr(cli, "console", _terminal(buf, emoji=False))
    result = CliRunner().invoke(app, ["curate", "-i", str(src), "-o", str(out), "--engine", "local",
                                      "--no-prefect"])
    assert result.exit_code == 0, result.output + buf.getvalue()
    assert ANSI not in buf.getvalue() and ESC not in _plain(buf.getvalue()) and f"{ESC}]8;" not in buf.getvalue()
    title = _plain(buf.getvalue()).split("┏")[0]  # above the table; wrapped to its width
    assert re.sub(r"\s", "", f"curate → {visible(out)}: 3 inputs") in re.sub(r"\s", "", title)
    key = next(r["key"] for r in pq.read_table(out / "ledger.parquet").to_pylist() if ANSI in r["source"])
    shown = io.StringIO()
    monkeypatch.setattr(lineage, "Console", partial(_terminal, shown))
    assert CliRunner().invoke(app, ["lineage", str(out), key]).exit_code == 0
    assert ANSI not in shown.getvalue() and "\\x1b[31mANSI.jpg" in shown.getvalue().replace("│", "").replace(
        " ", "").replace("\n", "")


def test_stats_tables_show_shard_names_sources_and_problems_as_text(tmp_path, monkeypatch):
    import tarfile

    from orchestration import stats_cli

    folder = tmp_path / f"shards{MARKUP}"
    folder.mkdir()
    tar_path = folder / f"{ANSI}{RLO}.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, data in ((f"k{MARKUP}.txt", b"a caption"), ("k2.json", b"[not json")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf = io.StringIO()
    monkeypatch.setattr(stats_cli, "Console", lambda **kw: _terminal(buf, **kw))
    result = CliRunner().invoke(app, ["stats", str(folder), "--workers", "1"])
    assert result.exit_code == 0, result.output + buf.getvalue()
    out = buf.getvalue()
    assert ANSI not in out and RLO not in out and f"{ESC}]8;" not in out and ESC not in _plain(out)
    flat = re.sub(r"[\s│┃]", "", _plain(out))
    assert "\\x1b[31mANSI\\u202e.tar" in flat  # the shard's name, escapes shown
    assert re.sub(r"\s", "", f"k{MARKUP}") in flat  # a problem example names the member: markup kept literal
