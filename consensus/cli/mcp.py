"""`consensus mcp`: the panel as an MCP server on stdio, for desktop assistants and coding agents."""

from __future__ import annotations

import asyncio

import typer

from consensus.cli.common import PanelFileOpt, configured_panel, make_provider


def mcp_command(panel_file: PanelFileOpt = None) -> None:
    """Serve the panel over MCP on stdio: tools ask_panel and get_debate, resource debate://{id}.

    Debates run in this process on the configured panel, as `consensus ask` runs them.

    get_debate knows the debates this process ran; the service serves the same tools at /mcp.
    """
    panel = configured_panel(panel_file)  # a bad panel or an unset key: one line and exit 2, before serving
    if any(s.route == "local" for s in panel.seats):
        from consensus.providers.local import load_in_background

        load_in_background()
    from service.mcp import serve_stdio

    try:
        asyncio.run(serve_stdio(panel, make_provider(panel)))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
