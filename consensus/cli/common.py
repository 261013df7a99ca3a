"""What every command shares: the consoles, the one-line failure, the panel checked before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from consensus.config import check_keys, load_panel
from consensus.errors import ConsensusError
from consensus.types import Panel

out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error stays one line in logs and pipes, not wrapped at 80

PanelFileOpt = Annotated[
    Path | None, typer.Option("--panel-file", help="TOML panel file (default: $CONSENSUS_PANEL_FILE)")
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one clear line on stderr and return the exit to raise."""
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def configured_panel(panel_file: Path | None) -> Panel:
    """Load the panel and check keys and the local model before anything runs."""
    try:
        panel = load_panel(panel_file)
    except ConsensusError as exc:
        raise fail(str(exc)) from None
    check_panel(panel)
    return panel


def check_panel(panel: Panel) -> None:
    """Providers, keys and the local model, checked before anything runs (this loads LiteLLM: seconds)."""
    try:
        check_keys(panel)
        if any(s.route == "local" for s in panel.seats):
            from consensus.providers.local import ensure_available

            ensure_available()
    except ConsensusError as exc:
        raise fail(str(exc)) from None


def make_provider(panel: Panel) -> Any:
    """The gateway for this panel's settings."""
    from consensus.providers import for_panel

    return for_panel(panel)
