"""The composition root of the command line: every command, registered in one list.

The commands import what they need when they run: `serve` and `keys` import the service, `ask` and `eval` the
providers their panel uses. So `consensus --help` starts fast, and the core never depends on this package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from consensus.cli.common import err, fail, out
from consensus.cli.debate import LiveView, ask, chat, panels, print_result
from consensus.cli.mcp import mcp_command
from consensus.cli.research import compare_command, eval_command
from consensus.cli.serve import keys_app, serve

COMMANDS: list[tuple[str, Callable[..., Any]]] = [
    ("ask", ask),
    ("chat", chat),
    ("panels", panels),
    ("eval", eval_command),
    ("compare", compare_command),
    ("serve", serve),
    ("mcp", mcp_command),
]
GROUPS: list[tuple[str, typer.Typer]] = [("keys", keys_app)]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Multi-LLM consensus debates.")
for _name, _command in COMMANDS:
    app.command(_name)(_command)
for _name, _group in GROUPS:
    app.add_typer(_group, name=_name)


def main() -> None:
    """Console-script entry point (`consensus`, `python -m consensus`)."""
    app()


__all__ = ["COMMANDS", "GROUPS", "LiveView", "app", "err", "fail", "main", "out", "panels", "print_result"]
