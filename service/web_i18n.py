"""Languages of the web interface: gettext catalogues (service/locales/<code>.po), negotiation, plain words."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

from consensus.language import UI_LANGUAGES, is_rtl, native_name

LOCALES = Path(__file__).parent / "locales"
DEFAULT_LANGUAGE = "en"

# A failed panelist's error kind (consensus.errors.ERROR_KINDS) in plain words; {name} is the panelist.
REASONS = {
    "timeout": "{name} did not answer in time.",
    "deadline": "{name} did not answer in time.",
    "rate_limit": "{name} was rate-limited by its provider.",
    "auth": "{name} was refused by its provider (API key).",
    "server": "{name}'s provider had an error.",
    "connection": "{name}'s provider had an error.",
    "context_overflow": "The question was too long for {name}.",
    "malformed": "{name} gave an answer that could not be read.",
    "unavailable": "{name} is not available.",
    "not_found": "{name} is not available.",
}
UNKNOWN_REASON = "{name} failed for an unknown reason."


@cache
def catalogue(code: str) -> dict[str, str]:
    """msgid -> translation of one language (entries without a translation are left out)."""
    with (LOCALES / f"{code}.po").open("rb") as f:
        cat = read_po(f)
    return {str(m.id): str(m.string) for m in cat if m.id and m.string}


class Translator:
    """The interface strings of one language; `t("Round {n}", n=2)` fills placeholders."""

    def __init__(self, code: str) -> None:
        self.code = code if code in UI_LANGUAGES else DEFAULT_LANGUAGE
        self.messages = catalogue(self.code)
        self.dir = "rtl" if is_rtl(self.code) else "ltr"

    def __call__(self, msgid: str, **values: object) -> str:
        text = self.messages.get(msgid) or catalogue(DEFAULT_LANGUAGE).get(msgid) or msgid
        for name, value in values.items():  # str.replace, not format: translations are data
            text = text.replace("{" + name + "}", str(value))
        return text

    def reason(self, kind: str, name: str) -> str:
        """Why a panelist failed, in plain words."""
        return self(REASONS.get(kind, UNKNOWN_REASON), name=name)

    def client_strings(self) -> dict[str, object]:
        """What the browser scripts need: every message and the error-kind table."""
        return {
            "messages": {m: self(m) for m in catalogue(DEFAULT_LANGUAGE)},
            "reasons": REASONS,
            "unknown_reason": UNKNOWN_REASON,
        }


def ui_language(tag: str | None) -> str | None:
    """'hi-IN' -> 'hi' when it is an interface language, else None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary in UI_LANGUAGES else None


def from_accept_language(header: str | None) -> str | None:
    """The best interface language in an Accept-Language header, by q-value then order."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((header or "").split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        code = ui_language(tag)
        if code and q > 0:
            ranked.append((-q, i, code))
    return min(ranked)[2] if ranked else None


def negotiate(*preferred: str | None, accept_language: str | None = None) -> str:
    """The first usable of `preferred` (e.g. ?lang=), then the browser's languages, then English."""
    for tag in preferred:
        code = ui_language(tag)
        if code:
            return code
    return from_accept_language(accept_language) or DEFAULT_LANGUAGE


@cache
def language_options() -> list[tuple[str, str]]:
    """(code, name in that language) for the language picker."""
    return [(code, native_name(code)) for code in UI_LANGUAGES]
