"""The report in a real browser: index.html and samples.html opened in headless Chromium (Debian's package).

Two reports: a thinking-budget sweep (three runs of one model) and two runs of two models whose prompts, thinking,
answers, run label and title hold ``<script>`` and ``<img onerror=...>``.  Checked: the first screen (the headline
figure and Table 1 start within the first 1000 px of a 1400 px wide window; the figure is drawn and shows values
on hover; a sweep's frontier figure is drawn left of it and shows its values on hover), the protocol's deviations
stated once with their runs, the question view (every run of one question, ordered by budget), the question
browser's filters and search, the paired table's filter and sort, the injected markup shown as text and never
run, and no console error or page error.  The pages are opened as written and as
copies without their Content-Security-Policy, so that escaping (not only the CSP) is what keeps the markup inert.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``; .ci/run installs it) and the ``playwright`` package
(the ``dev`` extra); playwright's own browser downloads are not used. Skipped, with the reason, without either.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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
WIDTH, FIRST_SCREEN = 1400, 1000

SCRIPT = "<script>window.__pwned=1;document.title='pwned'</script>"
IMG = '<img src=x onerror="window.__pwned=2">'
EVIL = f"{SCRIPT}{IMG}"
LABEL = f"mine {EVIL}"
CSP_META = re.compile(r"<meta[^>]*http-equiv=\"Content-Security-Policy\"[^>]*>\s*", re.IGNORECASE)
OWN_SCRIPTS = re.compile(r"^(plotly\.min\.js|m1-report\.js|questions_[A-Za-z0-9_-]+\.js)$")
BUDGETS = (256, 512, 1024)

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} not found: apt-get install chromium"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install -e '.[dev]'")


def _inject(run_folder: Path, task: str) -> None:
    """Markup in the prompt, thinking and answer of every sample of ``task``."""
    samples = next(run_folder.glob(f"samples_{task}_*.jsonl"))
    rows = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row["resps"] = [[f"<|im_start|>think\nthinking {EVIL}\n<|im_start|>answer\nanswer {EVIL}"]]
        row["filtered_resps"] = [f"answer {EVIL}"]
        row["arguments"]["gen_args_0"]["arg_0"] = f"prompt {EVIL}"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _without_csp(target: Path, bare: Path) -> None:
    """A copy of the report whose pages have no Content-Security-Policy (the scripts beside them unchanged)."""
    shutil.copytree(target, bare)
    for name in ("index.html", "samples.html"):
        source = (target / name).read_text(encoding="utf-8")
        stripped = CSP_META.sub("", source)
        assert stripped != source, f"{name}: no Content-Security-Policy meta tag to strip"
        (bare / name).write_text(stripped, encoding="utf-8")


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser")
    # two models, markup everywhere: the Table 1 Avg bars are the headline
    run = write_run(out / "a", small_table1(0.01, seed=4, budget=300), gen_kwargs={"max_tokens_thinking": 300})
    write_run(out / "b", small_table1(0.01, seed=5), model="org/model-b", records=False)
    _inject(run.folder, "m1_medqa")
    report = build_report(
        [out / "a", out / "b"],
        ReportOptions(labels=[LABEL, "theirs"], baseline="theirs", n_boot=200, title=f"title {EVIL}"),
    )
    write_report(report, out / "markup")
    _without_csp(out / "markup", out / "markup-no-csp")
    # a sweep: one model at three budgets, given in no particular order; one run's label carries markup
    folders = []
    for index, budget in enumerate((1024, 256, 512)):
        folder = out / f"sweep_{budget}"
        run = write_run(
            folder,
            small_table1(0.01, seed=10 + index, budget=budget),
            model="UCSC-VLAA/m1-7B-23K",
            gen_kwargs={"max_tokens_thinking": budget},
            date_id=f"2026-01-0{index + 1}T00-00-00.000001",
        )
        if budget == 512:
            _inject(run.folder, "m1_medqa")
        folders.append(folder)
    labels = [f"m1 budget 1024 {EVIL}", "m1 budget 256", "m1 budget 512"]
    report = build_report(folders, ReportOptions(labels=labels, n_boot=200, browser_limit=30))
    write_report(report, out / "sweep")
    _without_csp(out / "sweep", out / "sweep-no-csp")
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
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def visit(browser) -> Iterator[Any]:
    """Open a file in a fresh context, 1400 px wide; console errors, page errors, dialogs and requests are
    collected."""
    contexts: list[Any] = []

    def open_page(path: Path) -> Visit:
        context = browser.new_context(viewport={"width": WIDTH, "height": FIRST_SCREEN})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)  # generous: plotly.min.js is 4.6 MiB, and the CI machine may be busy
        page.set_default_navigation_timeout(90_000)
        seen = Visit(page)
        page.on("console", lambda m: seen.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: seen.errors.append(f"pageerror: {e}"))
        page.on("dialog", lambda d: (seen.dialogs.append(f"{d.type}: {d.message}"), d.dismiss()))
        page.on("request", lambda r: seen.requests.append(r.url))
        page.goto(path.as_uri(), wait_until="load")
        return seen

    yield open_page
    for context in contexts:
        context.close()


def assert_inert(seen: Visit, title_start: str) -> None:
    """Nothing from the files ran, and nothing of it became an element or an event handler; only the report's
    own scripts (files beside the page, and JSON data blocks) are in the page, and nothing came from elsewhere."""
    page = seen.page
    page.wait_for_timeout(200)  # an onerror of a failed image fires after load
    pwned = page.evaluate("String(window.__pwned)")
    assert pwned == "undefined", f"injected code ran: window.__pwned = {pwned}"
    assert page.title() != "pwned" and page.title().startswith(title_start), f"title changed: {page.title()!r}"
    assert seen.dialogs == [], "a dialog was opened"
    scripts = page.evaluate(
        """[...document.scripts].map(s => [s.getAttribute('src') || '', s.type, s.className, s.id])"""
    )
    for src, kind, css_class, ident in scripts:
        if src:
            assert OWN_SCRIPTS.match(src), f"a <script src> that is not the report's: {src}"
        else:
            assert kind == "application/json" and (css_class == "m1-figure" or ident == "m1-questions"), (
                f"an inline <script> (from model text?): {kind} {css_class} {ident}"
            )
    handlers = page.evaluate(
        """[...document.querySelectorAll('*')].flatMap(el =>
               [...el.attributes].filter(a => a.name.startsWith('on')).map(a => el.tagName + ' ' + a.name))"""
    )
    assert handlers == [], f"event-handler attributes in the DOM: {handlers}"
    assert page.locator("img[onerror], img[src='x']").count() == 0, "an <img> from model text"
    outside = [url for url in seen.requests if not url.startswith(("file://", "data:"))]
    assert outside == [], f"requests beyond the report folder: {outside}"


def top_of(page: Any, selector: str) -> float:
    return page.evaluate(f"document.querySelector({json.dumps(selector)}).getBoundingClientRect().top")


# ------------------------------------------------------------------------------------------------ index.html


@pytest.mark.parametrize("folder", ["markup", "markup-no-csp"])
def test_index_with_markup_in_chromium(reports, visit, folder):
    seen = visit(reports / folder / "index.html")
    page = seen.page
    assert_inert(seen, "title <script>")
    # Table 1: the ten benchmarks, one row per run and published row, the label's markup shown as text
    table = page.locator("#table1 table.table1")
    assert table.is_visible()
    headers = [h.strip() for h in table.locator("thead th").all_inner_texts()]
    labels = {b.label for b in TABLE1_COLUMN_INFO}
    assert [b.label for b in TABLE1_COLUMN_INFO] == [h for h in headers if h in labels], headers
    first_cells = [c.strip() for c in table.locator("tbody tr td:first-child").all_inner_texts()]
    assert LABEL in first_cells and "theirs" in first_cells, first_cells
    # not a sweep: the headline is Table 1's Avg as bars, drawn by plotly.js, the label as text in it
    figure = page.locator("#figure-headline .main-svg").first
    figure.wait_for()
    assert "Table 1 Avg" in page.locator("#figure-headline").inner_text()
    assert LABEL in page.locator("#figure-headline").inner_text()
    assert top_of(page, "#figure-headline") < FIRST_SCREEN and top_of(page, "#table1 table") < FIRST_SCREEN
    # the intervals: on hover (title) and, with the switch, in the cells
    cell = table.locator("tbody tr").first.locator("td.num").first
    assert "95 % CI [" in (cell.get_attribute("title") or "")
    assert not cell.locator(".ci").is_visible()
    page.locator("#show-ci").check()
    assert cell.locator(".ci").is_visible()
    assert seen.errors == [], f"console or page errors: {seen.errors}"


def test_index_of_a_sweep_in_chromium(reports, visit):
    seen = visit(reports / "sweep" / "index.html")
    page = seen.page
    assert_inert(seen, "m1-report: m1-7B-23K (3 runs)")
    # the first screen: the summary, the budget curve and Table 1 within the first 1000 px
    summary = page.locator("#summary").inner_text()
    assert "3 runs of m1-7B-23K" in summary and "thinking budget 256, 512, 1024" in summary
    page.locator("#figure-headline .main-svg").first.wait_for()
    assert top_of(page, "#figure-headline") < FIRST_SCREEN and top_of(page, "#table1 table") < FIRST_SCREEN
    assert "Avg over the Table 1 benchmarks" in page.locator("#figure-headline").inner_text()
    # hover values: a point of the curve shows its run, budget and accuracy
    point = page.locator("#figure-headline .scatterlayer .points path").first
    point.hover(force=True)
    hover = page.locator("#figure-headline .hoverlayer")
    hover.locator("text").first.wait_for()
    shown = hover.text_content()
    assert "thinking budget" in shown and "accuracy" in shown and "m1 budget" in shown
    # the frontier: the first figure, left of the budget curve on the first screen; hover: setting, accuracy, tokens
    page.locator("#figure-frontier .main-svg").first.wait_for()
    assert top_of(page, "#figure-frontier") < FIRST_SCREEN
    left = page.locator("#figure-frontier").bounding_box()
    assert left["x"] + left["width"] <= page.locator("#figure-headline").bounding_box()["x"]
    assert "Frontier: Avg over the Table 1 benchmarks" in page.locator("#figure-frontier").inner_text()
    page.locator("#figure-frontier .scatterlayer .points path").first.hover(force=True)
    hover = page.locator("#figure-frontier .hoverlayer")
    hover.locator("text").first.wait_for()
    shown = hover.text_content()
    assert "budget: budget 256" in shown and "accuracy" in shown and "tokens per question" in shown
    # the protocol: one table row for the three runs, the sweep's axes, each deviation once with its runs
    protocol = page.locator("#protocol")
    assert protocol.locator("table.protocol tbody tr").count() == 1
    assert "Sweep axes" in protocol.inner_text() and "256, 512, 1024" in protocol.inner_text()
    text = page.locator("body").inner_text()
    assert text.count("instead of the paper's 42") == 1, "the seed note is stated more than once"
    note = protocol.locator("ul.notes li")
    assert note.count() == 1 and note.first.inner_text().startswith("all 3 runs:")
    assert "no effect under greedy decoding" in note.first.inner_text()
    assert protocol.locator("ul.differences").count() == 0  # the budget is an axis, not a difference
    # the paired comparisons: one table, filtered by task, sorted by a column
    paired = page.locator("#paired-table tbody tr")
    total = paired.count()
    assert total == 2 * 11  # two pairs x (ten benchmarks + Avg)
    page.locator('#paired .filters select[data-column="0"]').select_option("MedQA")
    assert page.locator("#paired-table tbody tr:not([hidden])").count() == 2
    page.locator('#paired .filters select[data-column="0"]').select_option("")
    page.locator("#paired-table thead th", has_text="a − b").click()
    diffs = [float(t) for t in page.locator("#paired-table tbody tr td:nth-child(7)").all_inner_texts() if t.strip()]
    assert diffs == sorted(diffs)
    assert seen.errors == [], f"console or page errors: {seen.errors}"


# ----------------------------------------------------------------------------------------- the question browser


@pytest.mark.parametrize("folder", ["sweep", "sweep-no-csp"])
def test_question_view_follows_a_question_across_the_sweep(reports, visit, folder):
    seen = visit(reports / folder / "samples.html")
    page = seen.page
    view = page.locator("#qb-view")
    view.locator(".run-card").first.wait_for()
    assert_inert(seen, "m1-report: m1-7B-23K (3 runs)")
    # one question: its text, the correct option, and every run, ordered by budget
    assert "Question" in view.locator("pre.question").inner_text()
    assert view.locator(".options li.correct").count() == 1
    cards = view.locator(".run-card")
    assert cards.count() == 3
    assert [c.get_attribute("data-run") for c in cards.all()] == [
        "m1 budget 256",
        "m1 budget 512",
        f"m1 budget 1024 {EVIL}",
    ]
    for card in cards.all():  # the texts of a kept question: verdict, extraction, rule, answer
        assert card.locator(".badge").inner_text() in ("right", "wrong", "no answer")
        assert card.locator(".tag.rule").count() == 1 and card.locator("pre.answer").count() == 1
    # the filters change what is listed
    count = page.locator("#qb-count")
    everything = count.inner_text()
    assert everything.startswith("42 of 42")  # MedMCQA, the first task: 42 questions
    page.locator("#qb-status").select_option("changed")
    changed = int(count.inner_text().split()[0])
    assert 0 < changed < 42
    for strip in page.locator("#qb-list tbody td.strip").all():
        classes = strip.evaluate("td => [...td.querySelectorAll('span')].map(s => s.className)")
        assert "v-R" in classes and ("v-W" in classes or "v-N" in classes), classes
    page.locator("#qb-status").select_option("W")
    page.locator("#qb-run").select_option(label="m1 budget 256")
    wrong_at_256 = int(count.inner_text().split()[0])
    for strip in page.locator("#qb-list tbody td.strip").all():
        assert strip.evaluate("td => td.querySelector('span').className") == "v-W"
    page.locator("#qb-status").select_option("all")
    page.locator("#qb-run").select_option("")
    page.locator("#qb-search").fill("Question 7 of")
    sync_api.expect(count).to_have_text(re.compile(r"^1 of 42 "))
    assert page.locator("#qb-list tbody tr").count() == 1
    assert wrong_at_256 >= 0
    # another task, its markup shown as text
    page.locator("#qb-search").fill("")
    page.locator("#qb-task").select_option("m1_medqa")
    sync_api.expect(count).to_have_text(re.compile(r"of 20 questions$"))
    page.locator("#qb-status").select_option("kept")
    page.locator("#qb-list tbody tr").first.click()
    card = view.locator(".run-card", has=page.locator("strong", has_text="m1 budget 512"))
    assert card.locator("pre.answer").inner_text().strip() == f"answer {EVIL}"
    assert f"thinking {EVIL}" in card.text_content()
    assert_inert(seen, "m1-report: m1-7B-23K (3 runs)")
    assert seen.errors == [], f"console or page errors: {seen.errors}"


@pytest.mark.parametrize("folder", ["markup", "markup-no-csp"])
def test_question_browser_with_markup_in_chromium(reports, visit, folder):
    seen = visit(reports / folder / "samples.html")
    page = seen.page
    page.locator("#qb-view .run-card").first.wait_for()
    page.locator("#qb-task").select_option("m1_medqa")
    sync_api.expect(page.locator("#qb-count")).to_have_text(re.compile(r"of 20 questions$"))
    page.locator("#qb-status").select_option("kept")
    page.locator("#qb-list tbody tr").first.click()
    view = page.locator("#qb-view")
    card = view.locator(".run-card", has=page.locator("strong", has_text="mine <script>"))
    assert card.count() == 1 and card.get_attribute("data-run") == LABEL
    assert card.locator("pre.answer").inner_text().strip() == f"answer {EVIL}"
    prompt = view.locator("details", has=page.locator("summary", has_text="prompt")).first
    prompt.locator("summary").click()
    assert prompt.locator("pre").inner_text().strip() == f"prompt {EVIL}"
    assert_inert(seen, "title <script>")
    assert seen.errors == [], f"console or page errors: {seen.errors}"


# ---------------------------------------------------------------------------------------- the committed demo


DEMO = Path(__file__).resolve().parents[1] / "reports" / "demo"


@pytest.mark.skipif(not (DEMO / "index.html").exists(), reason="no committed demo report")
def test_the_committed_demo_report(visit):
    """reports/demo, both axes of m1-eval demo (the greedy sweep, budgets x Wait rounds, and 4 samples per question
    at budgets 8 and 16): the frontier, the budget curve and Table 1 on the first screen, one panel for the one
    benchmark; the question view shows all ten greedy runs of a question, by budget."""
    seen = visit(DEMO / "index.html")
    page = seen.page
    page.locator("#figure-headline .main-svg").first.wait_for()
    assert top_of(page, "#figure-headline") < FIRST_SCREEN and top_of(page, "#table1 table") < FIRST_SCREEN
    assert top_of(page, "#figure-frontier") < FIRST_SCREEN
    summary = page.locator("#summary").inner_text()
    assert "12 runs of demo-model, on demo chain (100 questions)." in summary
    assert ("Sweeps over thinking budget 4, 8, 16, 32, 64 × ignore rounds 0, 1; and over thinking budget 8, 16 with "
            "4 samples per question (temperature 0.8).") in summary  # fmt: skip
    assert page.locator("#protocol table.protocol tbody tr").count() == 2  # greedy; sampled, K = 4
    assert page.locator("#figure-frontier .updatemenu-container").count() == 0  # one panel: demo chain
    legend = [t.text_content() for t in page.locator("#figure-frontier .legendtext").all()]
    assert {"budget", "Wait rounds", "maj@k", "Pareto frontier"} <= set(legend)
    assert page.locator("#parallel-samples-table tbody tr").count() == 2
    assert (DEMO / "first-screen.png").stat().st_size > 10_000
    assert seen.errors == [], f"console or page errors: {seen.errors}"
    seen = visit(DEMO / "samples.html")
    cards = seen.page.locator("#qb-view .run-card")
    cards.first.wait_for()
    budgets = [re.search(r"budget (\d+)", c.get_attribute("data-run"))[1] for c in cards.all()]
    assert budgets == sorted(budgets, key=int) and len(budgets) == 10
    assert seen.errors == [], f"console or page errors: {seen.errors}"


# ------------------------------------------------------------------------------------ K samples per question


def test_a_k_sample_question_shows_sample_1_of_k(tmp_path, visit):
    """A sweep of K = 4 samples per question (tests/test_report_repeats.py): each card says which sample its texts
    are and shows every sample's verdict; "partly right" is a verdict of the list and a filter; index.html has the
    maj@k curves and the parallel-samples section."""
    from tests.test_report_repeats import write_sweep

    write_report(build_report(write_sweep(tmp_path), ReportOptions(n_boot=200)), tmp_path / "report")
    seen = visit(tmp_path / "report" / "samples.html")
    page = seen.page
    view = page.locator("#qb-view")
    view.locator(".run-card").first.wait_for()
    page.locator("#qb-search").fill("Question 1 of")
    sync_api.expect(page.locator("#qb-count")).to_have_text(re.compile(r"^1 of 4 "))
    page.locator("#qb-list tbody tr").first.click()
    card = view.locator(".run-card", has=page.locator("strong", has_text="budget 256"))
    assert card.locator(".badge").inner_text() == "partly right"
    line = card.locator("p.repeats")
    assert line.inner_text().startswith("sample 1 of 4 shown; 2 of 4 samples right.")
    assert [c.inner_text() for c in line.locator(".chip").all()] == ["C", "B", "B", "C"]
    assert [c.get_attribute("class") for c in line.locator(".chip").all()] == ["chip v-W", "chip v-R", "chip v-R",
                                                                               "chip v-W"]  # fmt: skip
    page.locator("#qb-search").fill("")
    page.locator("#qb-status").select_option("P")
    page.locator("#qb-run").select_option(label="m1-7B-23K (budget 512, 4 samples)")
    sync_api.expect(page.locator("#qb-count")).to_have_text(re.compile(r"^3 of 4 "))
    assert seen.errors == [], f"console or page errors: {seen.errors}"
    seen = visit(tmp_path / "report" / "index.html")
    seen.page.locator("#figure-frontier .main-svg").first.wait_for()
    assert seen.page.locator("#parallel-samples-table tbody tr").count() == 4
    assert seen.errors == [], f"console or page errors: {seen.errors}"
