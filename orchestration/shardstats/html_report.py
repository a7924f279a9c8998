"""One self-contained HTML file: summary cards, plots (inlined PNGs), tables, per-shard table, and a sample
browser whose thumbnails carry their grounding/OCR boxes; a click shows the sample's full json and messages."""

from __future__ import annotations

import json
import math
import os
from html import escape
from pathlib import Path
from typing import Any

from orchestration.shardstats.config import InspectConfig
from orchestration.shardstats.plots import figures
from orchestration.shardstats.summary import Report
from orchestration.shardstats.tables import human_bytes, num

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d232b;background:#f6f7f9}
header{background:#1f2d3d;color:#fff;padding:16px 24px}
header h1{margin:0 0 4px;font-size:20px} header .inputs{opacity:.75;font-size:12px;word-break:break-all}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-top:12px}
.card{background:#2c3e52;border-radius:6px;padding:8px 14px;min-width:90px}
.card b{display:block;font-size:20px} .card span{font-size:12px;opacity:.8}
.card.bad{background:#8a2d25}
nav{padding:8px 24px;background:#e9edf2;position:sticky;top:0;z-index:2} nav a{margin-right:14px}
section{padding:8px 24px} h2{font-size:17px;border-bottom:1px solid #d5dbe2;padding-bottom:4px}
.plots{display:flex;flex-wrap:wrap;gap:12px}
.plots figure{margin:0;background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:6px}
.plots img{display:block;max-width:440px} figcaption{font-size:12px;color:#555}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:6px 0 14px}
th,td{border:1px solid #dde2e8;padding:3px 8px;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.truncated td{background:#fff4d6} tr.unreadable td{background:#fde2df}
.scroll{max-height:420px;overflow:auto;display:inline-block}
.tables{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
#grid{display:flex;flex-wrap:wrap;gap:10px}
.sample{width:184px;background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:6px;cursor:pointer}
.sample:hover{border-color:#3b6ea8} .sample .cap{font-size:12px;max-height:4.2em;overflow:hidden}
.sample .meta{font-size:11px;color:#667}
.fig{position:relative;display:inline-block;line-height:0;background:#eee}
.fig img{display:block;max-width:172px;max-height:172px}
.big .fig img{width:min(480px,80vw);max-width:none;max-height:none}
.fig svg{position:absolute;left:0;top:0;width:100%;height:100%;overflow:visible}
.fig rect{fill:none;stroke-width:2px;vector-effect:non-scaling-stroke}
.fig rect.grounding{stroke:#ff2d55} .fig rect.ocr{stroke:#00a2ff}
.fig text{font-family:system-ui,sans-serif;paint-order:stroke;stroke:#fff;stroke-width:3px;
  vector-effect:non-scaling-stroke;fill:#111}
.noimg{display:flex;align-items:center;justify-content:center;width:172px;height:90px;color:#a33;
  font-size:12px;line-height:1.2;text-align:center}
.task{display:inline-block;font-size:11px;border-radius:3px;padding:0 5px;background:#e3ecf7;color:#234}
dialog{max-width:min(1100px,95vw);border:none;border-radius:8px;padding:16px}
dialog::backdrop{background:rgba(0,0,0,.45)}
.detail{display:flex;gap:16px;flex-wrap:wrap} .detail>div{min-width:280px;flex:1}
pre{background:#f3f5f8;padding:8px;max-height:50vh;overflow:auto;font-size:12px;white-space:pre-wrap}
.msg{border-left:3px solid #3b6ea8;padding:2px 8px;margin:6px 0;white-space:pre-wrap;font-size:13px}
.msg b{display:block;font-size:11px;color:#3b6ea8;text-transform:uppercase}
"""

JS = r"""
(function () {
  const samples = JSON.parse(document.getElementById('vlm-samples').textContent);
  const SVG = 'http://www.w3.org/2000/svg';
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function overlay(s) {
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 ' + s.width + ' ' + s.height);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('class', 'boxes');
    const fs = Math.max(s.width, s.height) / 16;
    for (const b of s.boxes) {
      const [x1, y1, x2, y2] = b.box;
      const r = document.createElementNS(SVG, 'rect');
      r.setAttribute('x', x1); r.setAttribute('y', y1);
      r.setAttribute('width', Math.max(x2 - x1, 1)); r.setAttribute('height', Math.max(y2 - y1, 1));
      r.setAttribute('class', b.kind);
      const title = document.createElementNS(SVG, 'title');
      title.textContent = (b.label || '') + ' [' + b.box.map(Math.round).join(', ') + ']';
      r.appendChild(title);
      svg.appendChild(r);
      if (b.label) {
        const t = document.createElementNS(SVG, 'text');
        t.setAttribute('x', x1); t.setAttribute('y', Math.max(y1 - fs * 0.2, fs));
        t.setAttribute('font-size', fs);
        t.setAttribute('class', 'label ' + b.kind);
        t.textContent = b.label;
        svg.appendChild(t);
      }
    }
    return svg;
  }
  function figure(s) {
    const wrap = el('div', 'fig');
    if (s.thumb) {
      const img = new Image();
      img.src = s.thumb; img.alt = s.key;
      wrap.appendChild(img);
      if (s.boxes.length && s.width && s.height) wrap.appendChild(overlay(s));
    } else {
      wrap.appendChild(el('div', 'noimg', s.problem || 'no image'));
    }
    return wrap;
  }
  function messages(list) {
    const box = el('div');
    for (const m of list || []) {
      const d = el('div', 'msg');
      d.appendChild(el('b', '', m.role || '?'));
      const parts = typeof m.content === 'string' ? [m.content] :
        (m.content || []).map(p => p.type === 'text' ? p.text : '[' + (p.type || 'part') + ']');
      d.appendChild(document.createTextNode(parts.join('\n')));
      box.appendChild(d);
    }
    return box;
  }
  const dialog = document.getElementById('detail');
  function show(s) {
    const body = document.getElementById('detail-body');
    body.replaceChildren();
    const left = el('div', 'big');
    left.appendChild(figure(s));
    left.appendChild(el('p', '', s.caption));
    if (s.boxes.length) {
      const ul = el('ul');
      for (const b of s.boxes) ul.appendChild(el('li', '', b.kind + ': ' + (b.label || '') + ' [' + b.box.map(Math.round).join(', ') + ']'));
      left.appendChild(ul);
    }
    const right = el('div');
    right.appendChild(el('h3', 'key', s.key));
    right.appendChild(el('div', 'meta', s.shard));
    if (s.messages) { right.appendChild(el('h4', '', 'messages')); right.appendChild(messages(s.messages)); }
    right.appendChild(el('h4', '', 'json'));
    right.appendChild(el('pre', 'json', s.json === undefined ? '(no .json)' : s.json));
    body.appendChild(left); body.appendChild(right);
    dialog.showModal();
  }
  document.getElementById('detail-close').addEventListener('click', () => dialog.close());
  dialog.addEventListener('click', e => { if (e.target === dialog) dialog.close(); });
  const grid = document.getElementById('grid');
  const filter = document.getElementById('task-filter');
  function render() {
    grid.replaceChildren();
    let shown = 0;
    for (const s of samples) {
      if (filter.value && s.task !== filter.value) continue;
      const card = el('div', 'sample');
      card.dataset.key = s.key; card.dataset.task = s.task;
      card.appendChild(figure(s));
      card.appendChild(el('div', 'cap', s.caption));
      const meta = el('div', 'meta');
      meta.appendChild(el('span', 'task', s.task));
      meta.appendChild(document.createTextNode(' ' + s.key));
      card.appendChild(meta);
      card.addEventListener('click', () => show(s));
      grid.appendChild(card);
      shown++;
    }
    document.getElementById('shown-samples').textContent = shown;
  }
  for (const t of [...new Set(samples.map(s => s.task))].sort()) {
    const o = el('option', '', t); o.value = t; filter.appendChild(o);
  }
  filter.addEventListener('change', render);
  render();
})();
"""


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def script_json(value: Any) -> str:
    """`value` as JSON that is safe inside a <script> element whatever the text: no NaN (JSON.parse rejects it),
    and no `<`, `>` or `&` (`</script>` or `<!--<script>` would change how the page parses), as \\u escapes."""
    text = json.dumps(_finite(value), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None,
           row_classes: list[str] | None = None, table_id: str = "") -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{escape(row_classes[i])}"' if row_classes and row_classes[i] else ""
        cells = "".join(f'<td class="n">{escape(str(v))}</td>' if j in numeric else f"<td>{escape(str(v))}</td>"
                        for j, v in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cards(data: dict[str, Any]) -> str:
    t = data["totals"]
    cards = [
        (f'<b id="total-samples" data-count="{t["samples"]}">{num(t["samples"])}</b>', "samples", ""),
        (f'<b id="total-shards">{num(t["shards"])}</b>', "shards", ""),
        (f"<b>{human_bytes(t['bytes'])}</b>", "payload", ""),
        (f"<b>{human_bytes(t['filesize'])}</b>", "on disk", ""),
    ]
    run = data.get("run")
    if run:
        for status in ("kept", "dropped", "error"):
            cards.append((f"<b>{num(run['status'].get(status, 0))}</b>", f"{status} by the flow", ""))
    broken = sum(data["problems"].values())
    if broken:
        cards.append((f'<b id="total-problems">{num(broken)}</b>', "broken input", "bad"))
    return "".join(f'<div class="card {cls}">{b}<span>{escape(label)}</span></div>' for b, label, cls in cards)


def _sections(data: dict[str, Any], max_shard_rows: int) -> list[tuple[str, str, str]]:
    """(id, title, html) of every section but the browser."""
    out = []
    if data["problems"]:
        examples = [[e["problem"], e["key"], e["detail"]] for e in data["problem_examples"]]
        html = _table(["problem", "count"], [[k, v] for k, v in data["problems"].items()], {1}, table_id="problems-table")
        if examples:
            html += "<h3>examples</h3>" + _table(["problem", "key / shard", "detail"], examples)
        out.append(("problems", "Broken input", html))
    plots = "".join(
        f'<figure><img class="plot" alt="{escape(title)}" src="{uri}"><figcaption>{escape(title)}</figcaption></figure>'
        for title, uri in figures(data)
    )
    out.append(("plots", "Plots", f'<div class="plots">{plots}</div>'))
    tables = []
    dist_rows = [[name, num(h["n"]), num(h["min"]), num(h["p10"]), num(h["p50"]), num(h["mean"]), num(h["p90"]),
                  num(h["max"])] for group in ("sizes", "scores") for name, h in data[group].items()]
    if dist_rows:
        tables.append("<div><h3>distributions (quantiles ±5%)</h3>"
                      + _table(["field", "n", "min", "p10", "p50", "mean", "p90", "max"], dist_rows, set(range(1, 8)))
                      + "</div>")
    if data["tasks"]:
        total = sum(data["tasks"].values()) or 1
        tables.append("<div><h3>task mix</h3>" + _table(
            ["task", "samples", "share"],
            [[k, num(v), f"{100 * v / total:.1f}%"] for k, v in data["tasks"].items()], {1, 2}, table_id="tasks-table",
        ) + "</div>")
    run = data.get("run")
    if run:
        rows = [[s, "", "", num(n)] for s, n in run["status"].items()]
        rows += [["", stage, reason, num(n)] for stage, rs in run["by_stage"].items() for reason, n in rs.items()]
        tables.append(f"<div><h3>how the flow got here: {num(run['inputs'])} inputs</h3>"
                      + _table(["status", "stage", "reason", "samples"], rows, {3}, table_id="run-table") + "</div>")
        concepts = run.get("concepts")
        if concepts:
            from itertools import zip_longest

            rows = [[i, *(b or ("", "")), *(a or ("", ""))]
                    for i, (b, a) in enumerate(zip_longest(concepts["before"], concepts["after"]), start=1)]
            tables.append("<div><h3>top concepts before / after balancing</h3>"
                          + _table(["#", "before", "n", "after", "n"], rows, {0, 2, 4}) + "</div>")
    if tables:
        out.append(("tables", "Tables", f'<div class="tables">{"".join(tables)}</div>'))
    shown, omitted = _bounded_rows(data["shards"], max_shard_rows)
    shard_rows = [[r["name"], num(r["nsamples"]), human_bytes(r["bytes"]), human_bytes(r["filesize"]), r["source"],
                   r["status"], r["error"] or ""] for r in shown]
    note = f"<p>{num(omitted)} more shards, all ok, are left out here: <code>--json</code> lists every one.</p>"
    out.append(("shards", f"Shards ({len(data['shards'])})", '<div class="scroll">' + _table(
        ["shard", "samples", "payload", "on disk", "stats from", "status", "error"], shard_rows, {1, 2, 3},
        [r["status"] if r["status"] != "ok" else "" for r in shown], table_id="shards-table") + "</div>"
        + (note if omitted else "")))
    return out


def _bounded_rows(rows: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], int]:
    """At most `limit` rows in order, broken shards always included; and how many ok rows were left out."""
    if len(rows) <= limit:
        return rows, 0
    room = max(limit - sum(r["status"] != "ok" for r in rows), 0)
    kept = []
    for row in rows:
        if row["status"] != "ok":
            kept.append(row)
        elif room:
            kept.append(row)
            room -= 1
    return kept, len(rows) - len(kept)


def render_html(report: Report, cfg: InspectConfig | None = None, title: str = "vlmdata stats") -> str:
    data = report.data
    sections = _sections(data, (cfg or InspectConfig()).max_html_shard_rows)
    total = data["totals"]["samples"]
    browser = (
        f'<p>Showing <span id="shown-samples">{len(report.samples)}</span> of {len(report.samples)} browsable samples '
        f"(a bounded selection; the dataset holds {num(total)}). Task: "
        '<select id="task-filter"><option value="">all</option></select> — click a sample for its json and messages. '
        'Boxes: <span style="color:#ff2d55">grounding</span>, <span style="color:#00a2ff">OCR</span>.</p>'
        '<div id="grid"></div>'
    )
    sections.append(("browser", "Samples", browser))
    nav = "".join(f'<a href="#{sid}">{escape(stitle)}</a>' for sid, stitle, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{escape(stitle)}</h2>{html}</section>' for sid, stitle, html in sections)
    samples_json = script_json(report.samples)
    inputs = ", ".join(data["inputs"])
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body>'
        f'<header><h1>{escape(title)}</h1><div class="inputs">{escape(inputs)}</div>'
        f'<div class="cards">{_cards(data)}</div></header><nav>{nav}</nav>{body}'
        '<dialog id="detail"><button id="detail-close" style="float:right">close</button>'
        '<div id="detail-body" class="detail"></div></dialog>'
        f'<script type="application/json" id="vlm-samples">{samples_json}</script><script>{JS}</script>'
        "</body></html>"
    )


def write_html(report: Report, path: str | os.PathLike[str], cfg: InspectConfig | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_html(report, cfg), encoding="utf-8")
    tmp.replace(path)
    return path
