"""Offline language detection and language names (no network)."""

from __future__ import annotations

import re
import threading
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from consensus.errors import QuestionError

# The interface languages: English, the 22 scheduled languages of India, Spanish, French, Arabic.
UI_LANGUAGES = (
    "en",
    "as",
    "bn",
    "brx",
    "doi",
    "gu",
    "hi",
    "kn",
    "ks",
    "kok",
    "mai",
    "ml",
    "mni",
    "mr",
    "ne",
    "or",
    "pa",
    "sa",
    "sat",
    "sd",
    "ta",
    "te",
    "ur",
    "es",
    "fr",
    "ar",
)
RTL_LANGUAGES = frozenset({"ar", "ur", "sd", "ks", "fa", "he", "ps"})

_CODE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
# Script ranges that name a language (or a small family settled below).
_SCRIPTS: tuple[tuple[int, int, str], ...] = (
    (0x0980, 0x09FF, "bn"),
    (0x0A00, 0x0A7F, "pa"),
    (0x0A80, 0x0AFF, "gu"),
    (0x0B00, 0x0B7F, "or"),
    (0x0B80, 0x0BFF, "ta"),
    (0x0C00, 0x0C7F, "te"),
    (0x0C80, 0x0CFF, "kn"),
    (0x0D00, 0x0D7F, "ml"),
    (0x1C50, 0x1C7F, "sat"),
    (0xABC0, 0xABFF, "mni"),
    (0x0900, 0x097F, "hi"),
    (0x0600, 0x06FF, "ar"),
    (0x0750, 0x077F, "ar"),
    (0x0E00, 0x0E7F, "th"),
    (0x0400, 0x04FF, "ru"),
    (0x0370, 0x03FF, "el"),
    (0x0590, 0x05FF, "he"),
    (0x3040, 0x30FF, "ja"),
    (0xAC00, 0xD7AF, "ko"),
    (0x4E00, 0x9FFF, "zh"),
)
_BEYOND_LATIN = re.compile(f"[{chr(min(lo for lo, _, _ in _SCRIPTS))}-\U0010ffff]")
_URDU_LETTERS = set("ٹڈڑںےۓہھ")
_SINDHI_LETTERS = set("ڄڃڇڏڙڦڪڱݙٻڀ")
_ASSAMESE_LETTERS = set("ৰৱ")
_lock = threading.Lock()
_NO_LANGUAGE = frozenset({"und", "mul", "zxx", "mis"})  # undetermined, multiple, no content, uncoded


def normalize_code(code: str) -> str:
    """Validate a language code (BCP 47 shape, known to CLDR) and return its canonical form."""
    c = code.strip()
    if not _CODE.fullmatch(c):
        raise QuestionError("language", f"{code!r} is not a language code like 'en', 'hi' or 'pt-BR'")
    primary = c.split("-")[0].lower()
    if primary in _NO_LANGUAGE:  # CLDR "knows" them (und even reads as English): they name no language to answer in
        raise QuestionError("language", f"{code!r} names no language; give one like 'en', 'hi' or 'pt-BR'")
    if _english_name(primary) is None:
        raise QuestionError("language", f"unknown language code {code!r}")
    rest = c.split("-")[1:]
    return "-".join([primary, *[r.upper() if len(r) == 2 else r for r in rest]])


@cache
def _english_name(primary: str) -> str | None:
    from babel import Locale, UnknownLocaleError

    try:
        return str(Locale.parse(primary).english_name)
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def language_name(code: str) -> str:
    """The English name of a language code ('hi' -> 'Hindi'); the code itself when unknown."""
    return _english_name(code.split("-")[0].lower()) or code


def native_name(code: str) -> str:
    """The language's name in itself ('hi' -> 'हिन्दी')."""
    from babel import Locale, UnknownLocaleError

    try:
        return str(Locale.parse(code.replace("-", "_")).display_name or code)
    except (UnknownLocaleError, ValueError, TypeError):
        return code


def is_rtl(code: str) -> bool:
    """True for right-to-left languages."""
    return code.split("-")[0].lower() in RTL_LANGUAGES


@lru_cache(maxsize=512)
def detect_language(text: str, default: str = "en") -> str:
    """Guess the language of `text` offline: by script first, then langdetect for Latin text.

    Remembered for the last 512 texts: a guess is deterministic (seeded) and costs CPU, and a widget sends its
    pre-loaded question again for every visitor who clicks Submit.
    """
    counts: dict[str, int] = {}
    for ch in _BEYOND_LATIN.findall(text):  # most questions have no such character: nothing to count
        o = ord(ch)
        for lo, hi, lang in _SCRIPTS:
            if lo <= o <= hi:
                counts[lang] = counts.get(lang, 0) + 1
                break
    letters = sum(1 for ch in text if ch.isalpha()) if counts else 0
    if counts and letters:
        lang, n = max(counts.items(), key=lambda kv: kv[1])
        if n / letters >= 0.3:
            chars = set(text)
            if lang == "ar":
                if chars & _SINDHI_LETTERS:
                    return "sd"
                if chars & _URDU_LETTERS:
                    return "ur"
            if lang == "bn" and chars & _ASSAMESE_LETTERS:
                return "as"
            if lang == "hi":
                return _langdetect(text, {"hi", "mr", "ne"}, "hi")
            return lang
    return _langdetect(text, None, default)


# langdetect profiles this module needs: scripts settle every other language before langdetect runs, so only
# Latin-script languages and the three Devanagari ones it tells apart are loaded: a fraction of the memory and time
# of all 55, with the same answers for these (figures: bench/README.md, "Language detection").
_LANGDETECT_PROFILES = (
    "af",
    "ca",
    "cs",
    "cy",
    "da",
    "de",
    "en",
    "es",
    "et",
    "fi",
    "fr",
    "hr",
    "hu",
    "id",
    "it",
    "lt",
    "lv",
    "nl",
    "no",
    "pl",
    "pt",
    "ro",
    "sk",
    "sl",
    "so",
    "sq",
    "sv",
    "sw",
    "tl",
    "tr",
    "vi",
    "hi",
    "mr",
    "ne",
)


@cache
def _factory() -> Any:
    """A private langdetect factory (the module-level one is global state loading all 55 profiles)."""
    import langdetect
    from langdetect.detector_factory import DetectorFactory

    profiles = Path(langdetect.__file__).parent / "profiles"
    factory = DetectorFactory()
    try:
        factory.load_json_profile([(profiles / code).read_text(encoding="utf-8") for code in _LANGDETECT_PROFILES])
    except Exception as exc:
        # Its bare `except:` turns a Ctrl-C during the load into "Profile format error": give the Ctrl-C back.
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise
    factory.seed = 0  # the same text always gets the same guess
    return factory


# langdetect averages 7 random-walk trials by default; 3 are as accurate on the interface's own strings in the
# panel's main languages (a test compares the two) at under half the CPU, and the guess runs before a debate's
# openings go out (figures: bench/README.md, "Language detection").
LANGDETECT_TRIALS = 3
_LANGDETECT_CHARS = 500  # langdetect reads n-grams from all it is given (10,000 characters at most): 500 tell a language, more costs CPU


def _langdetect(text: str, allowed: set[str] | None, default: str) -> str:
    words = text.split()
    if len(words) < 3 or (allowed is None and len(words) < 6 and text.isascii()):
        # langdetect guesses at random on a few unaccented words, and sure of itself: "Is 91 prime?" came out
        # Albanian (1.0), "Explain quantum entanglement simply." French. Accents are real evidence; without
        # them a short question takes the default (the widget and the API's `language` say otherwise).
        return default
    from langdetect.lang_detect_exception import LangDetectException

    with _lock:  # the first call loads the profiles once
        factory = _factory()
    try:
        detector = factory.create()
        detector.n_trial = LANGDETECT_TRIALS
        detector.append(text[:_LANGDETECT_CHARS])
        guesses = detector.get_probabilities()
    except LangDetectException:
        return default
    for g in guesses:
        lang = str(g.lang).split("-")[0]
        if allowed is not None and lang not in allowed:
            continue
        if allowed is not None or g.prob >= 0.8:
            return lang
    return default
