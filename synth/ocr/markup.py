"""Academic sources to blocks: Markdown with LaTeX math (and a small LaTeX subset converted to it), cut into
top-level blocks, each with its HTML (math left as TeX for KaTeX in the page) and its source markup."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin


@dataclass
class Block:
    markup: str  # the source lines of the block: Markdown with LaTeX math (the page's ground truth)
    html: str


def _math(content: str, options: dict) -> str:
    display = int(bool(options.get("display_mode")))
    return f'<span class="tex" data-display="{display}">{html.escape(content)}</span>'


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")  # raw HTML in a source is shown, not run
    dollarmath_plugin(md, renderer=_math, allow_space=False)
    return md


_MD = _parser()


def blocks(markdown: str) -> list[Block]:
    """Top-level blocks (headings, paragraphs, display math, lists, tables, code) in source order."""
    lines = markdown.splitlines()
    tokens = _MD.parse(markdown)
    out: list[Block] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        j = i
        if tok.nesting == 1:  # an opening token: the block runs to its matching close at level 0
            depth = 0
            while True:
                depth += tokens[j].nesting
                if depth == 0:
                    break
                j += 1
        group = tokens[i:j + 1]
        i = j + 1
        if tok.map is None:
            continue
        start, end = tok.map
        markup = "\n".join(lines[start:end]).strip()
        if markup:
            out.append(Block(markup, _MD.renderer.render(group, _MD.options, {})))
    return out


_TEX_INLINE = [
    (re.compile(r"\\textbf\{([^{}]*)\}"), r"**\1**"),
    (re.compile(r"\\(?:emph|textit)\{([^{}]*)\}"), r"*\1*"),
    (re.compile(r"\\texttt\{([^{}]*)\}"), r"`\1`"),
    (re.compile(r"\\\((.+?)\\\)", re.S), r"$\1$"),
    (re.compile(r"~"), " "),
]
_TEX_HEADINGS = {"section": "#", "subsection": "##", "subsubsection": "###", "paragraph": "####"}
_DISPLAY_ENVS = ("equation", "equation*", "align", "align*", "gather", "gather*", "multline", "multline*")


def tex_to_markdown(tex: str) -> str:
    """The LaTeX subset an article body uses, as Markdown with LaTeX math: sections, paragraphs, emphasis,
    inline `$…$`/`\\(…\\)` and display math (`\\[…\\]`, `$$…$$`, equation/align environments), itemize and
    enumerate. The preamble and unknown commands' braces are dropped; math is kept verbatim."""
    body = tex
    if "\\begin{document}" in body:
        body = body.split("\\begin{document}", 1)[1].split("\\end{document}", 1)[0]
    body = re.sub(r"(?<!\\)%.*", "", body)  # comments
    body = re.sub(r"\\\[(.+?)\\\]", lambda m: f"\n\n$$\n{m.group(1).strip()}\n$$\n\n", body, flags=re.S)
    for env in _DISPLAY_ENVS:
        e = re.escape(env)
        # align-like environments keep their alignment: KaTeX renders `aligned` inside display math.
        inner = "aligned" if env.startswith(("align", "multline")) else ("gathered" if env.startswith("gather")
                                                                         else None)
        body = re.sub(
            rf"\\begin\{{{e}\}}(.+?)\\end\{{{e}\}}",
            lambda m, inner=inner: "\n\n$$\n" + (f"\\begin{{{inner}}}{m.group(1).strip()}\\end{{{inner}}}"
                                                  if inner else m.group(1).strip()) + "\n$$\n\n",
            body, flags=re.S)
    body = re.sub(r"\\label\{[^{}]*\}", "", body)
    out: list[str] = []
    numbered: list[int] = []
    for raw in body.splitlines():
        line = raw.strip()
        m = re.match(r"\\(section|subsection|subsubsection|paragraph)\*?\{(.*)\}$", line)
        if m:
            out += ["", f"{_TEX_HEADINGS[m.group(1)]} {m.group(2)}", ""]
            continue
        if re.match(r"\\begin\{(itemize|enumerate)\}", line):
            numbered.append(1 if "enumerate" in line else 0)
            out.append("")
            continue
        if re.match(r"\\end\{(itemize|enumerate)\}", line):
            numbered.pop() if numbered else None
            out.append("")
            continue
        if line.startswith("\\item"):
            text = line[len("\\item"):].strip()
            if numbered and numbered[-1]:
                out.append(f"{numbered[-1]}. {text}")
                numbered[-1] += 1
            else:
                out.append(f"- {text}")
            continue
        if re.match(r"\\(maketitle|tableofcontents|noindent|bigskip|medskip|smallskip)\b", line):
            continue
        m = re.match(r"\\(title|author)\{(.*)\}$", line)
        if m:
            out += ["", f"# {m.group(2)}" if m.group(1) == "title" else f"*{m.group(2)}*", ""]
            continue
        out.append(raw.rstrip())
    text = "\n".join(out)
    for pattern, repl in _TEX_INLINE:
        parts = re.split(r"(\$\$.*?\$\$|\$[^$]*\$)", text, flags=re.S)  # leave math alone
        text = "".join(p if i % 2 else pattern.sub(repl, p) for i, p in enumerate(parts))
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
