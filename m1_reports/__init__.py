"""m1-report: comparison reports of lm-eval runs of medical reasoning models (the m1 paper's Table 1 and more).

Library use::

    from m1_reports import ReportOptions, build_report, write_report
    report = build_report(["out/run_a", "out/run_b"], ReportOptions(baseline="HuatuoGPT-o1-8B"))
    write_report(report, Path("reports/mine"))

``report.loaded.samples`` (one row per run, task and sample) and ``report.loaded.run_tasks`` (one row per
run and task) are the tidy pandas frames behind every table.
"""

from m1_base.errors import ReportInputError
from m1_reports.join import Loaded, LoadOptions, load
from m1_reports.report import Report, ReportOptions, build_report, write_report

__all__ = [
    "LoadOptions",
    "Loaded",
    "Report",
    "ReportInputError",
    "ReportOptions",
    "build_report",
    "load",
    "write_report",
]
