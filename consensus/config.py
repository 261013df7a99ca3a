"""Load a panel: a TOML panel file, the CONSENSUS_PANEL shortcut, or the default local panel."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from consensus.errors import ConfigError, MissingKeyError
from consensus.types import DebateSettings, Panel, Seat

LOCAL_MODEL = "local/smollm2"
_SEAT_FIELDS = set(Seat.model_fields)

# Answers are capped short: on a small machine the embedded model writes slowly under the JSON grammar, and a
# debate's calls must fit in seconds, not minutes (figures: bench/README.md, bench/local.py).
# Three seats on the embedded model that differ in persona, temperature and seed.
DEFAULT_LOCAL_SEATS = (
    {
        "name": "careful",
        "persona": "You are careful and precise. Think step by step, briefly.",
        "temperature": 0.2,
        "seed": 11,
    },
    {
        "name": "creative",
        "persona": "You are curious and consider unusual angles before answering.",
        "temperature": 0.9,
        "seed": 23,
    },
    {
        "name": "skeptic",
        "persona": "You are a skeptic: you check every claim and state only what you are sure of.",
        "temperature": 0.6,
        "seed": 37,
    },
)


def default_local_panel() -> Panel:
    """The no-keys panel: three differing seats on the embedded SmolLM2 model."""
    seats = [
        Seat(model=LOCAL_MODEL, max_tokens=64, timeout_s=240, context_window=2048, **s)  # type: ignore[arg-type]
        for s in DEFAULT_LOCAL_SEATS
    ]
    synth = seats[0].model_copy(update={"max_tokens": 80})
    debate = DebateSettings(max_rounds=1, deadline_s=600)
    return Panel(panelists=seats, synthesizer=synth, debate=debate, source="default local panel")


def panel_from_shortcut(spec: str, source: str = "CONSENSUS_PANEL") -> Panel:
    """A panel from 'model1,model2,model3'; the first model synthesizes."""
    models = [m.strip() for m in spec.split(",") if m.strip()]
    if not 2 <= len(models) <= 7:
        raise ConfigError(source, None, f"needs 2 to 7 comma-separated models, got {len(models)}")
    seats, used = [], set()
    for m in models:
        name = m.split("/")[-1] or m
        base, n = name, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        extra = {"context_window": 2048, "max_tokens": 96} if m.startswith("local/") else {}
        seats.append(Seat(name=name, model=m, **extra))  # type: ignore[arg-type]
    return Panel(panelists=seats, synthesizer=seats[0], source=source)


def load_panel_file(path: str | Path) -> Panel:
    """Parse and validate a TOML panel file; ConfigError names the file and field."""
    src = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(src, None, f"cannot read the file ({exc.strerror or exc})") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(src, None, f"not valid TOML: {exc}") from exc
    return panel_from_mapping(data, src)


def panel_from_mapping(data: Mapping[str, Any], src: str) -> Panel:
    """Validate the parsed contents of a panel file."""
    unknown = set(data) - {"debate", "panelist", "synthesizer", "analyst"}
    if unknown:
        raise ConfigError(
            src, sorted(unknown)[0], "unknown table or key (expected debate, panelist, synthesizer, analyst)"
        )
    entries = data.get("panelist")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(src, "panelist", "at least 2 [[panelist]] tables are required")
    if not 2 <= len(entries) <= 7:
        raise ConfigError(src, "panelist", f"a panel has 2 to 7 panelists, found {len(entries)}")
    seats: list[Seat] = []
    for i, entry in enumerate(entries):
        seats.append(_seat(entry, f"panelist[{i}]", src))
    names = [s.name for s in seats]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ConfigError(src, f"panelist[{i}].name", f"duplicate panelist name {n!r}")
    debate_raw = data.get("debate", {})
    try:
        debate = DebateSettings.model_validate(debate_raw)
    except ValidationError as exc:
        raise _config_error(src, "debate", exc) from None
    synth = _synthesizer(data.get("synthesizer"), seats, src)
    analyst = _synthesizer(data["analyst"], seats, src, "analyst") if "analyst" in data else None
    return Panel(panelists=seats, synthesizer=synth, analyst=analyst, debate=debate, source=src)


def _unknown_field(src: str, where: str, name: str, fields: Sequence[str]) -> ConfigError:
    near = difflib.get_close_matches(name, list(fields), n=1)
    return ConfigError(src, f"{where}.{name}", "unknown field" + (f" (did you mean {near[0]}?)" if near else ""))


def _seat(entry: Any, where: str, src: str, also: Sequence[str] = ()) -> Seat:
    if not isinstance(entry, dict):
        raise ConfigError(src, where, "must be a table")
    unknown = sorted(set(entry) - set(Seat.model_fields))
    if unknown:  # before "model is required": a misspelt `modle` is the error to name
        raise _unknown_field(src, where, unknown[0], [*Seat.model_fields, *also])
    if "model" not in entry:
        raise ConfigError(src, f"{where}.model", "is required (any LiteLLM model id, e.g. openai/gpt-4o-mini)")
    data = dict(entry)
    if str(data.get("model", "")).startswith("local/"):
        data.setdefault("context_window", 2048)
        data.setdefault("max_tokens", 96)
    try:
        return Seat.model_validate(data)
    except ValidationError as exc:
        raise _config_error(src, where, exc) from None


def _synthesizer(raw: Any, seats: list[Seat], src: str, section: str = "synthesizer") -> Seat:
    """The [synthesizer] (or [analyst]) section: a panelist's seat by name, or a seat of its own."""
    if raw is None:
        return seats[0]
    if not isinstance(raw, dict):
        raise ConfigError(src, section, "must be a table")
    if "panelist" in raw:
        extra = sorted(set(raw) - {"panelist"})
        if extra and extra[0] not in Seat.model_fields:
            raise _unknown_field(src, section, extra[0], ["panelist", *Seat.model_fields])
        if extra:
            raise ConfigError(src, f"{section}.{extra[0]}", "give either panelist or a model, not both")
        for s in seats:
            if s.name == raw["panelist"]:
                return s
        raise ConfigError(src, f"{section}.panelist", f"no panelist is named {raw['panelist']!r}")
    return _seat({"name": section, **raw}, section, src, also=["panelist"])


def _config_error(src: str, where: str, exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    field = f"{where}.{loc}" if loc else where
    if err["type"] == "extra_forbidden" and where == "debate" and len(err["loc"]) == 1:
        return _unknown_field(src, where, str(err["loc"][0]), list(DebateSettings.model_fields))
    msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
    return ConfigError(src, field, msg)


def load_panel(panel_file: str | Path | None = None, env: Mapping[str, str] | None = None) -> Panel:
    """The configured panel: --panel-file, CONSENSUS_PANEL_FILE, CONSENSUS_PANEL, else the local panel."""
    e = os.environ if env is None else env
    path = panel_file or e.get("CONSENSUS_PANEL_FILE")
    if path:
        return load_panel_file(path)
    if e.get("CONSENSUS_PANEL"):
        return panel_from_shortcut(e["CONSENSUS_PANEL"])
    return default_local_panel()


def check_keys(panel: Panel, env: Mapping[str, str] | None = None) -> None:
    """Before anything runs: ConfigError for a model no provider serves, MissingKeyError for an unset key."""
    e = os.environ if env is None else env
    for seat in panel.seats:
        if seat.api_key_env and not e.get(seat.api_key_env):
            raise MissingKeyError(
                panel.source,
                f"{seat.name}.api_key_env",
                f"environment variable {seat.api_key_env} is not set (needed by {seat.model})",
            )
    # LiteLLM places every other seat; the embedded model and the lean client's seats need no provider lookup.
    seats = [s for s in panel.seats if s.route == "litellm"]
    if not seats:
        return
    from consensus.providers.litellm import missing_key_env, provider_unknown

    for seat in seats:
        if provider_unknown(seat.model, seat.api_base):
            raise ConfigError(
                panel.source,
                f"{seat.name}.model",
                f"LiteLLM cannot tell which provider serves {seat.model!r}: write provider/model, "
                "e.g. 'openai/gpt-4o-mini', or 'openai/<name>' with api_base for an OpenAI-compatible server",
            )
    for seat in seats:
        if seat.api_key_env or seat.api_base:
            continue
        missing = missing_key_env(seat.model)
        if missing:
            raise MissingKeyError(
                panel.source,
                f"{seat.name}.model",
                f"environment variable {missing[0]} is not set (needed by {seat.model})",
            )
