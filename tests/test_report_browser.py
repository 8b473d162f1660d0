"""The report in a real browser: index.html and samples.html opened in headless Chromium (Debian's package).

A wrong sample whose prompt, thinking and answer hold ``<script>`` and ``<img onerror=...>``: both pages render
with no console error and no page error, Table 1 and the budget figure are there (the figure actually decoded),
the injected markup is shown as text, and none of it runs. Each page is opened twice: as written, and as a copy
with its Content-Security-Policy removed, so that escaping alone (not only the CSP) is what keeps it inert.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``; .ci/run installs it) and the ``playwright`` package
(the ``dev`` extra); playwright's own browser downloads are not used. Skipped, with the reason, without either.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from m1_reports import ReportOptions, build_report, write_report
from m1_reports.columns import TABLE1_COLUMN_INFO
from tests.report_fixtures import small_table1, write_run

CHROMIUM = Path(os.environ.get("M1_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

SCRIPT = "<script>window.__pwned=1;document.title='pwned'</script>"
IMG = '<img src=x onerror="window.__pwned=2">'
EVIL = f"{SCRIPT}{IMG}"
LABEL = f"mine {EVIL}"
CSP_META = re.compile(r"<meta[^>]*http-equiv=\"Content-Security-Policy\"[^>]*>\s*", re.IGNORECASE)

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} not found: apt-get install chromium"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install -e '.[dev]'")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    """A two-run report (one with a thinking budget) whose wrong MedQA samples carry markup in every text."""
    out = tmp_path_factory.mktemp("browser")
    run = write_run(out / "a", small_table1(0.01, seed=4, budget=300), gen_kwargs={"max_tokens_thinking": 300})
    write_run(out / "b", small_table1(0.01, seed=5), model="org/model-b", records=False)
    samples = next(run.folder.glob("samples_m1_medqa_*.jsonl"))
    rows = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row["resps"] = [[f"<|im_start|>think\nthinking {EVIL}\n<|im_start|>answer\nanswer {EVIL}"]]
        row["filtered_resps"] = [f"answer {EVIL}"]
        row["arguments"]["gen_args_0"]["arg_0"] = f"prompt {EVIL}"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = build_report(
        [out / "a", out / "b"],
        ReportOptions(labels=[LABEL, "theirs"], baseline="theirs", n_boot=200, title=f"title {EVIL}"),
    )
    target = out / "report"
    write_report(report, target)
    # The same pages without their Content-Security-Policy: escaping alone must keep the markup inert.
    bare = out / "no-csp"
    bare.mkdir()
    for name in ("index.html", "samples.html"):
        source = (target / name).read_text(encoding="utf-8")
        stripped = CSP_META.sub("", source)
        assert stripped != source, f"{name}: no Content-Security-Policy meta tag to strip"
        (bare / name).write_text(stripped, encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        except sync_api.Error as error:  # pragma: no cover - depends on the machine
            pytest.skip(f"playwright cannot start {CHROMIUM}: {error}")
        yield chromium
        chromium.close()


@dataclass
class Visit:
    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture
def visit(browser) -> Iterator[Any]:
    """Open a file in a fresh context; console errors, page errors and dialogs are collected."""
    contexts: list[Any] = []

    def open_page(path: Path) -> Visit:
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        seen = Visit(page)
        page.on("console", lambda m: seen.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: seen.errors.append(f"pageerror: {e}"))
        page.on("dialog", lambda d: (seen.dialogs.append(f"{d.type}: {d.message}"), d.dismiss()))
        page.goto(path.as_uri(), wait_until="load")
        return seen

    yield open_page
    for context in contexts:
        context.close()


def assert_inert(seen: Visit, title_start: str) -> None:
    """Nothing from the files ran, and nothing of it became an element or an event handler."""
    page = seen.page
    page.wait_for_timeout(200)  # an onerror of a failed image fires after load
    pwned = page.evaluate("String(window.__pwned)")
    assert pwned == "undefined", f"injected code ran: window.__pwned = {pwned}"
    assert page.title() != "pwned" and page.title().startswith(title_start), f"title changed: {page.title()!r}"
    assert seen.dialogs == [], "a dialog was opened"
    # the pages carry no script of their own (their CSP forbids any): every <script> came from the files
    scripts = page.evaluate("[...document.scripts].map(s => s.outerHTML.slice(0, 80))")
    assert scripts == [], f"<script> elements from model text: {scripts[:5]}"
    handlers = page.evaluate(
        """[...document.querySelectorAll('*')].flatMap(el =>
               [...el.attributes].filter(a => a.name.startsWith('on')).map(a => el.tagName + ' ' + a.name))"""
    )
    assert handlers == [], f"event-handler attributes in the DOM: {handlers}"
    assert page.locator("img[onerror], img[src='x']").count() == 0, "an <img> from model text"


@pytest.mark.parametrize("folder", ["report", "no-csp"])
def test_index_in_chromium(report_dir, visit, folder):
    seen = visit(report_dir / folder / "index.html")
    page = seen.page
    assert_inert(seen, "title <script>")
    assert seen.errors == [], f"console or page errors: {seen.errors}"

    # Table 1: a visible table whose header has the ten benchmarks, one row per run and published row
    heading = page.locator("h2#table1")
    assert heading.is_visible() and "Table 1" in heading.inner_text()
    table = page.locator("#table1 ~ table").first
    assert table.is_visible()
    headers = [h.strip() for h in table.locator("thead th").all_inner_texts()]
    assert [b.label for b in TABLE1_COLUMN_INFO] == [h for h in headers if h in {b.label for b in TABLE1_COLUMN_INFO}], headers
    first_cells = [c.strip() for c in table.locator("tbody tr td:first-child").all_inner_texts()]
    assert LABEL in first_cells and "theirs" in first_cells, first_cells  # the label's markup shown as text

    # the budget figure: present, visible and decoded by the browser
    figure = page.locator("img.plot")
    assert figure.count() == 1 and figure.is_visible()
    size = figure.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
    assert size[0] and size[1] > 0 and size[2] > 0, size

    assert seen.errors == [], f"console or page errors: {seen.errors}"


@pytest.mark.parametrize("folder", ["report", "no-csp"])
def test_samples_in_chromium(report_dir, visit, folder):
    seen = visit(report_dir / folder / "samples.html")
    page = seen.page
    assert_inert(seen, "title <script>")
    assert seen.errors == [], f"console or page errors: {seen.errors}"

    medqa = page.locator(".sample").filter(has_text=f"answer {SCRIPT}")
    assert medqa.count() > 0, "the MedQA samples with markup are not on the page"
    sample = medqa.first
    # the answer is open: the markup is there as visible text, character for character
    answer = sample.locator("details[open] > pre")
    assert answer.is_visible() and answer.inner_text().strip() == f"answer {EVIL}"
    # prompt and thinking open on a click, like a reader would
    for summary, text in (("prompt", f"prompt {EVIL}"), ("thinking", f"thinking {EVIL}")):
        details = sample.locator("details").filter(has=page.locator("summary", has_text=summary))
        details.locator("summary").click()
        pre = details.locator("pre")
        assert pre.is_visible() and pre.inner_text().strip() == text, summary

    assert seen.errors == [], f"console or page errors: {seen.errors}"
