"""Render summaries into report.html, summary.md and summary.json (and their compare twins).

This module only arranges numbers the analysis already computed; the wording and layout live
in the jinja2 templates under triage/templates/, so changing how a report reads never means
touching the arithmetic. The HTML is a single file with figures inlined as data URIs and a
Content-Security-Policy that forbids every network fetch: it must open the same from a CI
artifact, an air-gapped laptop or a mail attachment.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from triage.errors import ReportError
from triage.quantity import human_bytes
from triage.report.budgets import BudgetResult
from triage.report.compare import Comparison, MetricChange
from triage.report.figures import compare_figures, report_figures
from triage.report.fit import NOISE_FLOOR
from triage.report.plot import Figure
from triage.report.sites import short_file
from triage.report.summary import RunSummary

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True, slots=True)
class Written:
    """Paths of the files one render produced."""

    html: Path | None
    markdown: Path
    json: Path


@dataclass(frozen=True, slots=True)
class Verdict:
    #: "bad" (OOM), "good" (survived), "warn" (interrupted, error, no data).
    level: str
    title: str
    detail: str


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _secs(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:,.2f} s"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["bytes"] = human_bytes
    env.filters["sbytes"] = lambda v: human_bytes(v, signed=True)
    env.filters["num"] = _num
    env.filters["secs"] = _secs
    env.filters["pct"] = _pct
    env.filters["change"] = format_change
    env.filters["value"] = format_value
    env.filters["short_file"] = short_file
    return env


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "bytes":
        return human_bytes(value)
    if unit == "bytes/session":
        return human_bytes(value) + "/session"
    if unit == "seconds":
        return _secs(value)
    return _num(value)


def format_change(change: MetricChange) -> str:
    delta = change.delta
    if delta is None:
        return "n/a"
    if change.unit in ("bytes", "bytes/session"):
        text = human_bytes(delta, signed=True)
    elif change.unit == "seconds":
        text = f"{delta:+.2f} s"
    else:
        text = f"{delta:+,.0f}"
    rel = change.relative
    return text if rel is None else f"{text} ({rel * 100:+.1f}%)"


def verdict(s: RunSummary) -> Verdict:
    status, message = s.run.meta.outcome.status, s.run.meta.outcome.message
    if s.oom:
        where = f"{s.oom_sessions:,} sessions" if s.oom_sessions is not None else "unknown sessions"
        batch = f" (batch {s.oom_batch})" if s.oom_batch is not None else ""
        return Verdict("bad", f"OOMKilled at {where}{batch}", message)
    if status in ("completed", "max-batches"):
        return Verdict("good", f"Survived {s.sessions_created:,} sessions", message)
    return Verdict("warn", f"Run {status}", message or "the run did not finish")


def _kv(mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
    def show(v: Any) -> str:
        if isinstance(v, dict | list):
            return json.dumps(v, sort_keys=True)
        return "" if v is None else str(v)

    return [(str(k), show(v)) for k, v in mapping.items()]


def _write(path: Path, text: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename so a reader (or a CI upload) never sees half a report.
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        raise ReportError(f"cannot write {path}: {e}") from e
    return path


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def report_context(s: RunSummary) -> dict[str, Any]:
    meta = s.run.meta
    figures = report_figures(s)
    pyspy = sorted(s.run.pyspy.items())
    return {
        "s": s,
        "meta": meta,
        "verdict": verdict(s),
        "figures": {f.id: f for f in figures},
        "figure_count": len(figures),
        "options": _kv(meta.options),
        "versions": _kv(meta.versions),
        "cluster": _kv(meta.cluster),
        "restore": _kv(meta.restore),
        "cleanup": _kv(meta.cleanup),
        "target": _kv(meta.target),
        # Why a batch has no profile (capture missing, py-spy refused...) is worth a line.
        "notes": [str(n) for n in (*meta.profiler.notes, *meta.profile_notes)],
        "events": s.run.events,
        "rows": s.frame.astype(object).where(s.frame.notna(), None).to_dict(orient="records"),
        "pyspy": pyspy,
        "generated_at": _now(),
        "noise_floor": NOISE_FLOOR,
    }


def render_report(s: RunSummary, *, out_dir: Path) -> Written:
    """Write report.html, summary.md and summary.json for one run into `out_dir`."""
    env = _env()
    ctx = report_context(s)
    return _write_all(env, ctx, out_dir, ("report", "summary"), s.to_json())


def _write_all(
    env: jinja2.Environment,
    ctx: dict[str, Any],
    out_dir: Path,
    stems: tuple[str, str],
    doc: Any,
) -> Written:
    """The three outputs of one view: `<html stem>.html`, `<text stem>.md` and `.json`.

    The HTML and the Markdown render the same context, so a PR comment never says
    something the report does not.
    """
    html_stem, text_stem = stems
    return Written(
        html=_write(
            out_dir / f"{html_stem}.html", env.get_template(f"{html_stem}.html").render(**ctx)
        ),
        markdown=_write(
            out_dir / f"{text_stem}.md", env.get_template(f"{text_stem}.md.j2").render(**ctx)
        ),
        json=_write(out_dir / f"{text_stem}.json", json.dumps(doc, indent=2) + "\n"),
    )


def render_compare(c: Comparison, *, out_dir: Path) -> Written:
    """Write compare.html, compare.md and compare.json into `out_dir`."""
    env = _env()
    figures: list[Figure] = compare_figures(c.base, c.new)
    ctx = {
        "c": c,
        "base": c.base,
        "new": c.new,
        "base_verdict": verdict(c.base),
        "new_verdict": verdict(c.new),
        "figures": figures,
        "figure_count": len(figures),
        "generated_at": _now(),
    }
    return _write_all(env, ctx, out_dir, ("compare", "compare"), c.to_json())


def render_gate(
    *, results: Sequence[BudgetResult], summaries: Sequence[RunSummary], out_dir: Path
) -> Written:
    """Write ci-summary.md and ci-summary.json: the gate's verdict across every scenario."""
    env = _env()
    failed = [r for r in results if r.exceeded]
    md = env.get_template("ci.md.j2").render(
        results=results, failed=failed, summaries=summaries, verdict=verdict
    )
    payload = {
        "schema": 1,
        "passed": not failed,
        "exceeded": [r.describe for r in failed],
        "results": [r.to_json() for r in results],
        "runs": [
            {"run_id": s.run_id, "scenario": s.scenario, "run_dir": str(s.run.path)}
            for s in summaries
        ],
    }
    return Written(
        html=None,
        markdown=_write(out_dir / "ci-summary.md", md),
        json=_write(out_dir / "ci-summary.json", json.dumps(payload, indent=2) + "\n"),
    )
