"""What the tests share: the answer helper, the one panel factory, and a panel as a panel file.

ans("4")                                  a panelist's JSON answer (consensus.providers.fake.answer_json)
make_panel("abc", max_rounds=0)           seats openai/a, openai/b, openai/c; a synthesizes
make_panel(stub=stub, transport=...)      seats openai/alice, bob, carol on the loopback stub
write_panel(tmp_path / "p.toml", panel)   the same panel as a TOML file, for the CLI and service processes
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from consensus.providers.fake import answer_json as ans
from consensus.types import DebateSettings, Panel, Seat

__all__ = ["SEATS", "STUB_TIMINGS", "ans", "make_panel", "write_panel"]

SEATS = ("alice", "bob", "carol")
# On the stub a call that hangs times out in 10 s, and a 429 waits at most 1 s: no fault stalls a test for the
# defaults' minute. A test that needs other figures passes them.
STUB_TIMINGS: Mapping[str, float] = {"call_timeout_s": 10, "retry_budget_s": 10, "max_retry_after_s": 1}


class HasApiBase(Protocol):
    """The loopback stub, or anything else that names an OpenAI-compatible base URL."""

    @property
    def api_base(self) -> str: ...


def make_panel(
    names: Iterable[str] = SEATS,
    *,
    stub: HasApiBase | None = None,
    transport: str = "litellm",
    synthesizer: str | None = None,
    seat: Mapping[str, Any] | None = None,
    source: str = "test",
    **debate: Any,
) -> Panel:
    """The panel factory: a seat `openai/<name>` per name, each with the `seat` fields; `debate` sets DebateSettings.

    With `stub`, the seats call it (over `transport`) with STUB_TIMINGS unless `debate` says otherwise. The first
    seat synthesizes, unless `synthesizer` names a panelist or a seat of its own (`openai/<synthesizer>`).
    """
    fields: dict[str, Any] = {"api_base": stub.api_base} if stub is not None else {}
    fields.update(transport=transport, **(seat or {}))
    seats = [Seat(name=n, model=f"openai/{n}", **fields) for n in names]
    synth = next((s for s in seats if s.name == synthesizer), None) if synthesizer else seats[0]
    if synth is None:
        synth = Seat(name=str(synthesizer), model=f"openai/{synthesizer}", **fields)
    settings = {**STUB_TIMINGS, **debate} if stub is not None else debate
    return Panel(panelists=seats, synthesizer=synth, debate=DebateSettings(**settings), source=source)


def write_panel(path: Path, panel: Panel, extra: str = "") -> Path:
    """Write `panel` as a panel file (the fields it was given, not the defaults), then `extra` TOML text."""
    lines = ["[debate]", *_fields(panel.debate.model_dump(exclude_unset=True)), ""]
    for s in panel.panelists:
        lines += ["[[panelist]]", *_fields(s.model_dump(exclude_unset=True)), ""]
    if panel.synthesizer in panel.panelists[1:]:
        lines += ["[synthesizer]", *_fields({"panelist": panel.synthesizer.name}), ""]
    elif panel.synthesizer not in panel.panelists:
        lines += ["[synthesizer]", *_fields(panel.synthesizer.model_dump(exclude_unset=True)), ""]
    path.write_text("\n".join(lines) + extra, encoding="utf-8")
    return path


def _fields(values: Mapping[str, Any]) -> list[str]:
    """TOML `key = value` lines (JSON's strings, numbers and booleans are TOML's too)."""
    return [f"{k} = {json.dumps(v)}" for k, v in values.items()]
