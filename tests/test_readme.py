"""The README's tables and counts agree with the code they describe."""

from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import REPO
from triage.exitcodes import DESCRIPTIONS

pytestmark = pytest.mark.unit

README = (REPO / "README.md").read_text()


def test_exit_code_table_is_the_one_in_the_code() -> None:
    section = README[README.index("## Exit codes of `triage`") :]
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", section, re.M))
    assert rows == {str(int(code)): text for code, text in DESCRIPTIONS.items()}


def test_faults_survived_counts_every_fault_test() -> None:
    tree = ast.parse((REPO / "tests" / "e2e" / "test_faults.py").read_text())
    tests = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)
             and n.name.startswith("test_")]  # fmt: skip
    m = re.search(r"Faults survived: (\d+) of (\d+)", README)
    assert m, "the README states the fault suite's result"
    assert int(m.group(2)) == len(tests), tests
    assert int(m.group(1)) <= int(m.group(2))
