"""agentic_operator: a memory-bounded operator for vteam.ambient-code AgenticSessions.

The public surface is deliberately tiny: `main` runs the operator and `oomcount.OOMCounter`
is shared with the triage CLI. Importing the package must stay cheap (the CLI imports
`agentic_operator.oomcount`), so `main` imports the operator machinery only when called.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["__version__", "main"]

__version__ = "0.1.0"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the operator until SIGTERM/SIGINT; returns the process exit code."""
    from agentic_operator.__main__ import main as _main

    return _main(argv)
