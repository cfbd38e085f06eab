"""The scalability gate as JUnit XML: one test case per budget, so CI systems show it natively.

GitLab, Jenkins, GitHub's test reporters and most CI dashboards read JUnit XML: each budget
of each scenario becomes a test case named `<scenario>.<budget>`, failed when exceeded (with
the measured value and the limit in the message), skipped when the run did not measure it.
Written with the standard library's ElementTree: no dependency for one file format.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

from triage.errors import ReportError
from triage.report.budgets import BudgetResult


def junit_xml(results: Sequence[BudgetResult], *, name: str = "triage scalability gate") -> str:
    failed = [r for r in results if r.status == "fail"]
    skipped = [r for r in results if r.status in ("skipped", "missing")]
    suite = ET.Element(
        "testsuite",
        name=name,
        tests=str(len(results)),
        failures=str(len(failed)),
        errors="0",
        skipped=str(len(skipped)),
    )
    for r in results:
        case = ET.SubElement(
            suite, "testcase", classname=f"triage.{r.scenario}", name=f"{r.scenario}.{r.metric}"
        )
        detail = f"{r.label}: {r.format(r.actual)} (limit {r.format(r.limit)})"
        if r.status == "fail":
            ET.SubElement(case, "failure", message=r.describe, type="BudgetExceeded").text = detail
        elif r.status == "skipped":
            ET.SubElement(case, "skipped", message=f"{r.label}: not measured in this run")
        elif r.status == "missing":
            ET.SubElement(case, "skipped", message=f"no run of scenario {r.scenario}")
        else:
            ET.SubElement(case, "system-out").text = detail
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path, results: Sequence[BudgetResult]) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(junit_xml(results), encoding="utf-8")
    except OSError as e:
        raise ReportError(f"cannot write --junit {path}: {e.strerror or e}") from e
    return path
