"""What counts as a GUI element, decided in the page: every visible element that carries text, a label or a role,
or is interactive, with its box clipped to the viewport; zero-sized, hidden, off-screen and covered ones are
counted by reason and left out.

`EXTRACT_JS` is a JS function of one argument ({min_side, max_text_chars}) run by `page.evaluate`; it returns
{"elements": [{tag, role, text, box: [x1, y1, x2, y2] in visual-viewport px, interactive, visible_text}], "dropped": {reason: n}}.
"""

from __future__ import annotations

from typing import Any

from filters.heuristics import normalize_caption

EXTRACT_JS = r"""
(opts) => {
  // The screenshot shows the visual viewport: on a phone without a meta viewport the 980-px layout is zoomed
  // out to fit, so boxes are clipped to it and scaled by its zoom.
  const vv = window.visualViewport || {offsetLeft: 0, offsetTop: 0, scale: 1,
    width: document.documentElement.clientWidth, height: document.documentElement.clientHeight};
  const left = vv.offsetLeft, top = vv.offsetTop, zoom = vv.scale;
  const vw = left + vv.width, vh = top + vv.height;
  const SKIP = new Set(['script', 'style', 'noscript', 'template', 'head', 'meta', 'link', 'title', 'br', 'wbr',
                        'html', 'body', 'iframe', 'object', 'embed']);
  const HEADINGS = new Set(['h1', 'h2', 'h3', 'h4', 'h5', 'h6']);
  const IMPLICIT = {a: 'link', button: 'button', img: 'img', li: 'listitem', select: 'combobox',
                    textarea: 'textbox', nav: 'navigation', th: 'columnheader', td: 'cell', summary: 'button',
                    option: 'option', dt: 'term', dd: 'definition', p: 'paragraph', label: 'label',
                    caption: 'caption', figcaption: 'caption', code: 'code', pre: 'code', main: 'main',
                    header: 'banner', footer: 'contentinfo', form: 'form', table: 'table', dialog: 'dialog'};
  const INPUT_ROLES = {checkbox: 'checkbox', radio: 'radio', button: 'button', submit: 'button', reset: 'button',
                       image: 'button', range: 'slider', search: 'searchbox', number: 'spinbutton'};
  const INTERACTIVE_ROLES = new Set(['button', 'link', 'checkbox', 'radio', 'tab', 'menuitem', 'option', 'switch',
                                     'textbox', 'searchbox', 'combobox', 'slider', 'spinbutton', 'treeitem']);
  const norm = (s) => (s || '').replace(/\s+/g, ' ').trim();
  const clip = (s) => s.length > opts.max_text_chars ? s.slice(0, opts.max_text_chars) : s;

  function roleOf(el, tag) {
    const explicit = el.getAttribute('role');
    if (explicit) return explicit.split(/\s+/)[0];
    if (HEADINGS.has(tag)) return 'heading';
    if (tag === 'a') return el.hasAttribute('href') ? 'link' : '';
    if (tag === 'input') return INPUT_ROLES[(el.type || 'text').toLowerCase()] || 'textbox';
    return IMPLICIT[tag] || '';
  }
  function isInteractive(el, tag, role) {
    if (tag === 'a') return el.hasAttribute('href');
    if (['button', 'select', 'textarea', 'summary'].includes(tag)) return true;
    if (tag === 'input') return (el.type || '').toLowerCase() !== 'hidden';
    if (INTERACTIVE_ROLES.has(role)) return true;
    if (el.hasAttribute('onclick') || el.isContentEditable && el.getAttribute('contenteditable') !== null) return true;
    const tabindex = el.getAttribute('tabindex');
    return tabindex !== null && parseInt(tabindex, 10) >= 0;
  }
  function ownText(el) {
    let t = '';
    for (const n of el.childNodes) if (n.nodeType === 3) t += n.nodeValue;
    return norm(t);
  }
  function labelOf(el, tag) {
    const aria = el.getAttribute('aria-label');
    if (aria) return norm(aria);
    const by = el.getAttribute('aria-labelledby');
    if (by) {
      const t = by.split(/\s+/).map((id) => { const e = document.getElementById(id); return e ? e.textContent : ''; });
      if (norm(t.join(' '))) return norm(t.join(' '));
    }
    if (tag === 'img' || (tag === 'input' && (el.type || '').toLowerCase() === 'image')) return norm(el.getAttribute('alt'));
    if (tag === 'input') {
      const type = (el.type || 'text').toLowerCase();
      if (['button', 'submit', 'reset'].includes(type)) return norm(el.value);
      if (el.value && !['checkbox', 'radio', 'password', 'range'].includes(type)) return norm(el.value);
      if (el.placeholder) return norm(el.placeholder);
      if (el.labels && el.labels.length) return norm(el.labels[0].textContent);
    }
    if (tag === 'textarea' && el.placeholder) return norm(el.placeholder);
    return norm(el.getAttribute('title'));
  }

  const dropped = {zero_size: 0, hidden: 0, offscreen: 0, covered: 0, empty: 0};
  const elements = [];
  const chosenInteractive = [];
  const root = document.body || document.documentElement;
  for (const el of root.querySelectorAll('*')) {
    const tag = el.tagName.toLowerCase();
    if (SKIP.has(tag) || el.closest('svg') && tag !== 'svg') continue;
    const role = roleOf(el, tag);
    const interactive = isInteractive(el, tag, role);
    const own = ownText(el);
    const label = labelOf(el, tag);
    const carries = interactive || own || label || el.hasAttribute('role') || HEADINGS.has(tag) || tag === 'li';
    if (!carries) continue;
    // Text inside a link or button: the interactive ancestor stands for it.
    if (!interactive && chosenInteractive.some((a) => a.contains(el))) continue;
    const r = el.getBoundingClientRect();
    if (!(r.width > 0 && r.height > 0)) { dropped.zero_size++; continue; }
    const cs = getComputedStyle(el);
    const visible = el.checkVisibility
      ? el.checkVisibility({opacityProperty: true, visibilityProperty: true, contentVisibilityAuto: true})
      : cs.visibility === 'visible' && parseFloat(cs.opacity) > 0;
    if (!visible) { dropped.hidden++; continue; }
    const x1 = Math.max(left, r.left), y1 = Math.max(top, r.top);
    const x2 = Math.min(vw, r.right), y2 = Math.min(vh, r.bottom);
    if (x2 - x1 < opts.min_side || y2 - y1 < opts.min_side) { dropped.offscreen++; continue; }
    const hit = document.elementFromPoint((x1 + x2) / 2, (y1 + y2) / 2);
    if (!hit || !(hit === el || el.contains(hit))) { dropped.covered++; continue; }
    const shown = norm(el.innerText);
    const text = clip(shown || label);
    if (!text && !interactive && !el.hasAttribute('role')) { dropped.empty++; continue; }
    if (interactive) chosenInteractive.push(el);
    const box = [(x1 - left) * zoom, (y1 - top) * zoom, (x2 - left) * zoom, (y2 - top) * zoom];
    elements.push({tag, role, text, box, interactive, visible_text: !!shown});
  }
  return {elements, dropped};
}
"""


def scale_elements(extracted: dict[str, Any], scale: float) -> tuple[list[dict[str, Any]], list[bool]]:
    """The elements as ELEMENTS rows (box in screenshot pixels) and, beside them, whether each one's text is
    visible on screen (rather than a label such as alt text). Texts and roles are normalised as the curate
    heuristics normalise captions (control and format characters out, whitespace runs one space): a screenshot
    cannot show an ESC or a BEL, so no target may ask for one; a text left empty is None (no text target)."""
    elements, visible = [], []
    for e in extracted.get("elements", []):
        elements.append({"tag": e["tag"], "role": normalize_caption(e["role"] or "") or None,
                         "text": normalize_caption(e["text"] or "") or None,
                         "box": [round(float(v) * scale, 2) for v in e["box"]], "interactive": bool(e["interactive"])})
        visible.append(bool(e["visible_text"]))
    return elements, visible
