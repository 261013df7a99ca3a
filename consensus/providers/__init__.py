"""Providers: the gateway's call policy over one transport per route, and the fakes tests use.

`for_panel(panel)` is the one place a panel's provider is built, for the command line and the service alike.
"""

from __future__ import annotations

from consensus.providers.gateway import Gateway, load_transports
from consensus.types import Panel


def for_panel(panel: Panel, *, preload: bool = False) -> Gateway:
    """The gateway for this panel's settings; `preload` imports what its seats' transports need now."""
    if preload:
        load_transports(panel.seats)
    return Gateway(panel.debate)


__all__ = ["Gateway", "for_panel", "load_transports"]
