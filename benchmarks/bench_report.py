"""m1-report at scale: 20 synthetic full m1_table1 runs against a bare JSON parse of the same lines.

    python benchmarks/bench_report.py                 # 20 runs x 11,461 documents = 229,220 sample rows
    python benchmarks/bench_report.py --runs 2 --scale 0.1   # a quick look
    python benchmarks/bench_report.py --runs 10 --browser   # and the pages of the full report in Chromium
    python benchmarks/bench_report.py --screenshot reports/demo   # its first screen: reports/demo/first-screen.png

Generates the runs (lm-eval 0.4.13 layout: results, samples and m1 generation records; sample rows of
2-4 KB with long response texts) in a temporary folder, then times, each in a fresh subprocess:

- ``parse``: ``json.loads`` of every line of every samples/records file (the floor any reader pays);
- ``tables``: the report without HTML and plots (reading + frames + Table 1, paired, budget, scoring,
  leaderboard; the Markdown/CSV/LaTeX/JSON files written);
- ``full``: the whole report (also index.html, samples.html and the plots when matplotlib is installed).

and prints each time, the ratios to ``parse`` (target: tables <= 2x) and each phase's peak memory
(maximum resident set size of its process, ``resource.getrusage``).

``--browser`` then opens the full report in headless Chromium (``/usr/bin/chromium`` through playwright, as the
tests do): index.html until its figure is drawn, and the question browser (samples.html) until the first question
shows every run, then the largest task, the "changed between runs" filter and a search; each step's time, the page's
JavaScript heap and the size of the question data files are printed.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def generate(folder: Path, runs: int, scale: float, seed: int = 0) -> dict[str, float]:
    sys.path.insert(0, str(REPO))
    from tests.report_fixtures import TABLE1_SIZES, make_truth, write_run

    started = time.perf_counter()
    rng = random.Random(seed)
    sizes = {task: max(20, round(n * scale)) for task, n in TABLE1_SIZES.items()}
    for index in range(runs):
        budget = (512, 1024, 2048, 4096, 8192)[index % 5]
        model = f"org/m1-7B-variant-{index // 5}"
        tasks = {
            task: make_truth(n, 0.3 + 0.5 * rng.random(), seed=index * 100 + i, budget=budget, ignore=index % 3)
            for i, (task, n) in enumerate(sizes.items())
        }
        text_sizes = [rng.randint(500, 1500) for _ in range(997)]
        write_run(
            folder / f"run_{index:02d}",
            tasks,
            model=model,
            date_id=f"2026-02-{1 + index % 28:02d}T00-00-00.{index:06d}",
            gen_kwargs={"max_tokens_thinking": budget, "thinking_n_ignore": index % 3},
            text_size=lambda doc_id, sizes=text_sizes: sizes[doc_id % len(sizes)],
        )
    files = sorted(folder.rglob("*.jsonl"))
    rows = sum(1 for path in files if path.name.startswith("samples_") for _ in path.open("rb"))
    total = sum(path.stat().st_size for path in files)
    samples_bytes = sum(p.stat().st_size for p in files if p.name.startswith("samples_"))
    return {
        "seconds": time.perf_counter() - started,
        "sample_rows": rows,
        "jsonl_files": len(files),
        "jsonl_bytes": total,
        "mean_sample_row_bytes": samples_bytes / max(rows, 1),
    }


def phase_parse(folder: Path, lean: bool = False) -> dict[str, float]:
    """The floor: every line of every JSON-lines file through ``json.loads``, nothing kept.

    ``lean``: the C scanner without json.loads' per-call overheads (``raw.decode()`` + ``raw_decode``), which
    is how m1-report's reader calls it; reported too, so that the ratio is not flattered by that difference.
    """
    started = time.perf_counter()
    lines = 0
    raw_decode = json.JSONDecoder().raw_decode
    loads = (lambda line: raw_decode(line.decode("utf-8"))) if lean else json.loads
    for path in sorted(folder.rglob("*.jsonl")):
        with path.open("rb") as handle:
            for line in handle:
                loads(line)
                lines += 1
    return {"seconds": time.perf_counter() - started, "lines": lines, "peak_rss_mb": _rss_mb()}


def phase_report(folder: Path, full: bool) -> dict[str, float]:
    sys.path.insert(0, str(REPO))
    import m1_reports  # noqa: F401  (imports are not part of the measurement)
    from m1_reports import ReportOptions, build_report, write_report

    runs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("run_"))
    target = folder / f"report_{'full' if full else 'tables'}"
    started = time.perf_counter()
    report = build_report(
        runs, ReportOptions(baseline="HuatuoGPT-o1-8B", html=full, plots=full, browser_limit=50 if full else 0)
    )
    built = time.perf_counter()
    write_report(report, target)
    finished = time.perf_counter()
    return {
        "seconds": finished - started,
        "build_seconds": built - started,
        "write_seconds": finished - built,
        "sample_rows": len(report.loaded.samples),
        "runs": len(report.loaded.runs),
        "peak_rss_mb": _rss_mb(),
        "report_bytes": sum(p.stat().st_size for p in target.iterdir()),
        "plots": (target / "budget_scaling.png").exists(),
    }


def phase_browser(folder: Path) -> dict[str, float]:
    """The full report's pages in Chromium: load, first question, the largest task, a filter, a search."""
    import re

    from playwright.sync_api import expect, sync_playwright

    report = folder / "report_full"
    data = sorted(report.glob("questions_*.js"), key=lambda p: p.stat().st_size)
    result: dict[str, float] = {
        "data_files": len(data),
        "largest_data_mb": data[-1].stat().st_size / 2**20 if data else 0.0,
        "all_data_mb": sum(p.stat().st_size for p in data) / 2**20,
        "index_mb": (report / "index.html").stat().st_size / 2**20,
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        started = time.perf_counter()
        page.goto((report / "index.html").as_uri())
        page.locator("#figure-headline .main-svg").first.wait_for()
        result["index_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        page.goto((report / "samples.html").as_uri())
        page.locator("#qb-view .run-card").first.wait_for()
        result["first_question_seconds"] = time.perf_counter() - started
        result["run_cards"] = page.locator("#qb-view .run-card").count()
        options = page.locator("#qb-task option").all()
        sizes = [int(re.search(r"\((\d+) questions", o.inner_text())[1]) for o in options]
        largest = options[sizes.index(max(sizes))].get_attribute("value")
        started = time.perf_counter()
        page.locator("#qb-task").select_option(largest)
        expect(page.locator("#qb-count")).to_have_text(re.compile(rf"of {max(sizes)} questions$"))
        page.locator("#qb-view .run-card").first.wait_for()
        result["largest_task_questions"] = max(sizes)
        result["largest_task_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        page.locator("#qb-status").select_option("changed")
        expect(page.locator("#qb-page")).to_have_text(re.compile(r"^page 1 of"))
        result["filter_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        page.locator("#qb-status").select_option("all")
        page.locator("#qb-search").fill(f"Question {max(sizes) // 2} of")  # the generated questions' text
        expect(page.locator("#qb-count")).to_have_text(re.compile(r"^1 of "))
        result["search_seconds"] = time.perf_counter() - started - 0.2  # the search waits 200 ms for more typing
        result["js_heap_mb"] = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0") / 2**20
        result["console_errors"] = len(errors)
        browser.close()
    return result


def screenshot(report: Path, width: int = 1400, height: int = 1000) -> dict[str, float]:
    """``<report>/first-screen.png``: index.html's first screen in Chromium (``width`` x ``height``), once its
    headline figure is drawn; returns where the figure and Table 1 start (px from the top)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto((report / "index.html").resolve().as_uri())
        page.locator("#headline .main-svg, #headline img, #headline p").first.wait_for()
        page.wait_for_timeout(300)
        page.screenshot(path=str(report / "first-screen.png"))
        tops = page.evaluate(
            "['#headline', '#table1 table'].map(s => document.querySelector(s).getBoundingClientRect().top)"
        )
        browser.close()
    return {"figure_top": tops[0], "table1_top": tops[1]}


def _run_phase(name: str, folder: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--data", str(folder)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--scale", type=float, default=1.0, help="share of each benchmark's documents (1.0 = all)")
    parser.add_argument("--keep", type=Path, help="generate into (and keep) this folder instead of a temporary one")
    parser.add_argument("--browser", action="store_true", help="also time the full report's pages in Chromium")
    parser.add_argument("--screenshot", type=Path, metavar="REPORT", help="write REPORT/first-screen.png and exit")
    parser.add_argument("--phase", choices=["parse", "parse-lean", "tables", "full", "browser"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.screenshot:
        tops = screenshot(args.screenshot)
        print(f"{args.screenshot / 'first-screen.png'}: figure at {tops['figure_top']:.0f} px, Table 1 at "
              f"{tops['table1_top']:.0f} px")  # fmt: skip
        return 0
    if args.phase:
        if args.phase.startswith("parse"):
            result = phase_parse(args.data, lean=args.phase == "parse-lean")
        elif args.phase == "browser":
            result = phase_browser(args.data)
        else:
            result = phase_report(args.data, args.phase == "full")
        print(json.dumps(result))
        return 0

    folder = args.keep or Path(tempfile.mkdtemp(prefix="m1-report-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        print(f"generating {args.runs} runs (scale {args.scale}) in {folder} ...", flush=True)
        generated = generate(folder, args.runs, args.scale)
        print(
            f"  {generated['sample_rows']:,} sample rows (mean {generated['mean_sample_row_bytes']:,.0f} bytes), "
            f"{generated['jsonl_files']} JSON-lines files, {generated['jsonl_bytes'] / 2**20:,.0f} MiB, "
            f"in {generated['seconds']:.1f} s",
            flush=True,
        )
        for path in folder.rglob("*.jsonl"):  # warm the page cache so that every phase reads from memory
            with path.open("rb") as handle:
                while handle.read(1 << 24):
                    pass
        parse = _run_phase("parse", folder)
        lean = _run_phase("parse-lean", folder)
        tables = _run_phase("tables", folder)
        full = _run_phase("full", folder)
        print(
            f"bare json.loads of {parse['lines']:,} lines: {parse['seconds']:.2f} s, "
            f"peak RSS {parse['peak_rss_mb']:.0f} MiB"
        )
        print(
            f"bare JSONDecoder.raw_decode of the same lines (the reader's call): {lean['seconds']:.2f} s; "
            f"the report's tables take {tables['seconds'] / lean['seconds']:.2f}x that, the full report "
            f"{full['seconds'] / lean['seconds']:.2f}x"
        )
        full_name = "report with HTML and plots" if full["plots"] else "report with HTML (no plots: no matplotlib)"
        for name, result in (("report, tables only", tables), (full_name, full)):
            print(
                f"{name}: {result['seconds']:.2f} s (read+build {result['build_seconds']:.2f} s, write "
                f"{result['write_seconds']:.2f} s) = {result['seconds'] / parse['seconds']:.2f}x the bare parse, "
                f"peak RSS {result['peak_rss_mb']:.0f} MiB, {result['sample_rows']:,} rows of {result['runs']} runs, "
                f"output {result['report_bytes'] / 2**20:.1f} MiB"
            )
        if args.browser:
            pages = _run_phase("browser", folder)
            print(
                f"in Chromium: index.html ({pages['index_mb']:.1f} MiB) drawn in {pages['index_seconds']:.2f} s; the "
                f"question browser's first question ({pages['run_cards']} runs) in "
                f"{pages['first_question_seconds']:.2f} s; "
                f"the largest task ({pages['largest_task_questions']:,} questions) in "
                f"{pages['largest_task_seconds']:.2f} s; a filter {pages['filter_seconds']:.2f} s, a search "
                f"{pages['search_seconds']:.2f} s; JavaScript heap {pages['js_heap_mb']:.0f} MiB; "
                f"{pages['data_files']} question data files, {pages['all_data_mb']:.1f} MiB (largest "
                f"{pages['largest_data_mb']:.1f} MiB); console errors {pages['console_errors']}"
            )
        ratio = tables["seconds"] / parse["seconds"]
        verdict = "within" if ratio <= 2.0 else "OVER"
        print(f"ratio (tables only) {ratio:.2f}x: {verdict} the 2x target")
        return 0 if ratio <= 2.0 else 1
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
