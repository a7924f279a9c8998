"""The HTML report in a real headless Chromium: no console errors, the true sample count, rendered plots,
grounding and OCR boxes drawn over their images, a click showing the sample's json and messages."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import sync_playwright
from typer.testing import CliRunner

from orchestration.cli import app
from orchestration.shardstats.config import InspectConfig
from orchestration.shardstats.html_report import render_html
from orchestration.shardstats.summary import summarise
from tests.orchestration.test_shardstats_cli import RUN_STATS
from tests.orchestration.test_shardstats_scan import count_samples, make_sample, write_shards, write_tar

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    paths = write_shards(root / "shards", nshards=5, per_shard=10)
    broken = [make_sample(900 + i) for i in range(3)]
    del broken[0]["png"]
    broken[1]["json"] = b"not json </script><b>"
    paths.append(write_tar(root / "shards" / "00005.tar", broken))
    (root / "stats.json").write_text(json.dumps(RUN_STATS))  # an output folder: the flow's counts and concepts
    html = root / "report.html"
    result = CliRunner().invoke(app, ["stats", str(root), "--html", str(html), "--workers", "2",
                                      "--browse-per-shard", "5", "--browse-max", "30"])
    assert result.exit_code == 0, result.output
    return html, count_samples(paths), len(paths)


def test_report_in_headless_chromium(report):
    html, real_count, nshards = report
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.as_uri())
        page.wait_for_load_state("load")

        assert int(page.locator("#total-samples").get_attribute("data-count")) == real_count == 53
        assert page.locator("#total-samples").inner_text() == str(real_count)
        assert page.locator("#shards-table tbody tr").count() == nshards
        assert "no_image" in page.locator("#problems-table").inner_text()
        assert "json_invalid" in page.locator("#problems-table").inner_text()

        plots = page.locator("img.plot")
        assert plots.count() >= 6
        sizes = plots.evaluate_all("els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
        assert all(done and w > 100 and h > 50 for done, w, h in sizes), sizes
        captions = page.locator(".plots figcaption").all_inner_texts()
        for wanted in ("caption_chars", "image_width", "clip_score", "ocr[].score", "task mix",
                       "kept / dropped / error", "top concepts before balancing", "top concepts after balancing"):
            assert wanted in captions, wanted
        assert "too_small" in page.locator("#run-table").inner_text()

        cards = page.locator(".sample")
        # 5 from each of the five full shards, all 3 of the broken one.
        assert cards.count() == int(page.locator("#shown-samples").inner_text()) == 28
        # A grounding sample shows both boxes, inside its image, with their labels.
        card = page.locator('.sample[data-task="grounding"]').first
        card.scroll_into_view_if_needed()
        img = card.locator(".fig img").bounding_box()
        rects = [r.bounding_box() for r in card.locator("svg rect.grounding").all()]
        assert len(rects) == 2
        for r in rects:
            assert r["width"] > 5 and r["height"] > 5
            assert img["x"] - 1 <= r["x"] and r["x"] + r["width"] <= img["x"] + img["width"] + 1
            assert img["y"] - 1 <= r["y"] and r["y"] + r["height"] <= img["y"] + img["height"] + 1
        assert card.locator("svg text").all_text_contents() == ["red square", "blue disc"]
        # The first box covers the image's second quarter, as its pixel coordinates say.
        assert abs((rects[0]["x"] - img["x"]) / img["width"] - 0.25) < 0.05
        assert page.locator('.sample[data-task="ocr"] svg rect.ocr').count() >= 1

        key = card.get_attribute("data-key")
        card.click()
        dialog = page.locator("dialog#detail")
        assert dialog.is_visible()
        assert f'"key": "{key}"' in dialog.locator("pre.json").inner_text()
        assert dialog.locator("svg rect.grounding").count() == 2
        page.locator("#detail-close").click()
        assert not dialog.is_visible()

        page.locator('.sample[data-task="cot"]').first.click()
        assert "<think>" in dialog.locator(".msg").nth(1).inner_text()
        page.locator("#detail-close").click()

        # The broken sample is browsable too: no image, its raw non-JSON text shown as text.
        page.select_option("#task-filter", "caption")
        assert page.locator(".sample .noimg").count() >= 1
        page.locator('.sample[data-key="s00901"]').click()
        assert "not json </script><b>" in dialog.locator("pre.json").inner_text()
        browser.close()
    assert errors == []


def test_shard_table_is_bounded_but_keeps_broken_shards(tmp_path):
    paths = write_shards(tmp_path / "shards", nshards=8, per_shard=2)
    paths[5].write_bytes(paths[5].read_bytes()[:1500])  # cut inside its first sample: nothing readable
    report = summarise([str(tmp_path / "shards")], InspectConfig(workers=1))
    html = render_html(report, InspectConfig(max_html_shard_rows=3))
    rows = html.split('id="shards-table"')[1].split("</table>")[0]
    assert rows.count("<tr") == 1 + 3  # header + 3 rows
    assert "00005.tar" in rows and 'class="unreadable"' in rows
    assert "5 more shards, all ok, are left out" in html
    assert f'data-count="{report.data["totals"]["samples"]}"' in html


def test_dollar_signs_in_field_names_and_tasks_are_plain_text(tmp_path):
    """matplotlib would parse `$…$` as mathtext and raise on what is not TeX; labels are drawn as given."""
    samples = []
    for i in range(4):
        sample = make_sample(i)
        fields = json.loads(sample["json"])
        fields["$\\frac{score$"] = 0.1 * i
        fields["task"] = "$\\alpha_{$ price in $"
        sample["json"] = json.dumps(fields).encode()
        samples.append(sample)
    write_tar(tmp_path / "shards" / "00000.tar", samples)
    report = summarise([str(tmp_path / "shards")], InspectConfig(workers=1))
    html = render_html(report)
    assert "<figcaption>$\\frac{score$</figcaption>" in html
    assert "$\\alpha_{$ price in $" in html.split('id="tasks-table"')[1]


def test_browser_shows_samples_whatever_their_text(tmp_path):
    """A caption `<!--<script>` and a NaN inside third-party `messages` must not leave the browser empty."""
    samples = [make_sample(i, "cot") for i in range(3)]
    samples[0]["txt"] = b"<!--<script> caption"
    fields = json.loads(samples[1]["json"])
    fields["messages"][0]["score"] = float("nan")
    samples[1]["json"] = json.dumps(fields).encode()  # Python writes NaN, as third-party shards do
    write_tar(tmp_path / "shards" / "00000.tar", samples)
    report = summarise([str(tmp_path / "shards")], InspectConfig(workers=1), browse=True)
    (tmp_path / "r.html").write_text(render_html(report), encoding="utf-8")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((tmp_path / "r.html").as_uri())
        page.wait_for_load_state("load")
        assert page.locator(".sample").count() == 3
        assert page.locator('.sample[data-key="s00000"] .cap').inner_text() == "<!--<script> caption"
        page.locator('.sample[data-key="s00001"]').click()
        assert "How many shapes?" in page.locator("dialog#detail .msg").first.inner_text()
        browser.close()
    assert errors == []
