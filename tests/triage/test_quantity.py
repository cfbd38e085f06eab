"""Memory quantities from the command line: accepted forms and one-line refusals."""

from __future__ import annotations

import pytest

from triage.errors import UsageError
from triage.exitcodes import ExitCode
from triage.quantity import format_bytes, parse_memory, parse_quantity_bytes

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("128Mi", 128 * 2**20),
        ("1Gi", 2**30),
        ("512M", 512 * 10**6),
        ("134217728", 134217728),
        ("0.5Gi", 2**29),
    ],
)
def test_accepts_kubernetes_quantities(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("128MB", "is not a memory quantity"),
        ("-1", "is not a memory quantity"),
        ("abc", "is not a memory quantity"),
        ("", "is not a memory quantity"),
        ("0", "must be greater than zero"),
        ("1Ki", "too small"),
        ("0.3", "whole number"),
    ],
)
def test_rejects_with_one_line_naming_the_accepted_forms(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_memory(text)
    message = info.value.message
    assert fragment in message
    assert "128Mi" in message and "\n" not in message
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    ("n", "text"), [(2**20, "1Mi"), (128 * 2**20, "128Mi"), (3 * 2**30, "3Gi"), (1000, "1000")]
)
def test_format_is_exact_and_round_trips(n: int, text: str) -> None:
    assert format_bytes(n) == text
    assert parse_quantity_bytes(text) == n
