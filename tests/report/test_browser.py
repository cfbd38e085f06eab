"""A real browser opens the reports: every figure decodes, no console errors, no network.

Uses Debian's Chromium headless with --dump-dom: the page's own self-check (in _base.html)
writes data-figures-loaded / data-errors on <body>, and console messages are read from
Chromium's stderr log ("CONSOLE" lines). Network is cut three ways: the report's CSP, a host
resolver that resolves nothing, and a proxy on a closed loopback port.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.report.conftest import SYNTHETIC
from tests.report.synthetic import Synthetic, write_run
from triage.report import compare_runs, render_compare, render_report, summarize
from triage.rundir import load_run

pytestmark = pytest.mark.unit

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "report-screenshot.png"

if not Path(CHROMIUM).exists():  # pragma: no cover - the image installs Debian's chromium
    pytest.fail(f"chromium not found at {CHROMIUM}", pytrace=False)


@dataclass
class Loaded:
    dom: str
    console: list[str]

    def body_attr(self, name: str) -> str | None:
        body = re.search(r"<body\b[^>]*>", self.dom)
        assert body, self.dom[:500]
        m = re.search(rf'{name}="([^"]*)"', body.group(0))
        return m.group(1) if m else None


def chromium(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # A fresh profile per launch: a shared one makes a second launch hand its URL to the
    # first process and exit without output.
    with tempfile.TemporaryDirectory(prefix="triage-chromium-") as profile:
        env = {**os.environ, "HOME": profile}
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-crash-reporter",
                "--disable-breakpad",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--proxy-server=127.0.0.1:9",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                "--hide-scrollbars",
                "--virtual-time-budget=5000",
                *extra,
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            env=env,
            check=False,
        )


def load(page: Path) -> Loaded:
    proc = chromium(page, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    return Loaded(dom=proc.stdout, console=console)


def assert_clean(loaded: Loaded) -> None:
    assert loaded.console == [], loaded.console
    expected = loaded.body_attr("data-figures-expected")
    assert expected is not None and int(expected) >= 1
    assert loaded.body_attr("data-figures-loaded") == expected
    assert loaded.body_attr("data-errors") == "0"


def test_harness_sees_console_errors(tmp_path: Path) -> None:
    """Guard against a silent harness: a page that logs an error must be caught."""
    page = tmp_path / "bad.html"
    page.write_text('<html><body><script>console.error("boom"); nope();</script></body></html>')
    loaded = load(page)
    assert any("boom" in line for line in loaded.console)
    assert any("nope is not defined" in line for line in loaded.console)


def test_report_loads_clean_and_screenshot(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, SYNTHETIC["oom-full"])
    written = render_report(summarize(load_run(run_dir)), out_dir=run_dir)
    assert written.html is not None
    loaded = load(written.html)
    assert_clean(loaded)
    assert loaded.body_attr("data-figures-loaded") == "9"

    shot = tmp_path / "report.png"
    proc = chromium(written.html, f"--screenshot={shot}", "--window-size=1200,2400")
    assert proc.returncode == 0 and shot.stat().st_size > 50_000, proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("TRIAGE_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.write_bytes(shot.read_bytes())


def test_compare_loads_clean(tmp_path: Path) -> None:
    base = write_run(tmp_path / "a", Synthetic(run_suffix="base"))
    new = write_run(tmp_path / "b", Synthetic(run_suffix="new0", bytes_per_session=34_000))
    c = compare_runs(base=summarize(load_run(base)), new=summarize(load_run(new)))
    written = render_compare(c, out_dir=tmp_path / "cmp")
    assert written.html is not None
    assert_clean(load(written.html))


def test_recorded_reports_load_clean(recorded_run: Path) -> None:
    written = render_report(summarize(load_run(recorded_run)), out_dir=recorded_run)
    assert written.html is not None
    assert_clean(load(written.html))
