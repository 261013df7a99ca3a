"""Pure: the deterministic faithfulness guard run on a consensus before anyone sees it, and the majority fallback.

check_consensus returns one Check per rule below, in this order, passed or not (a Check's detail may
quote model text: surfaces render it escaped; rejection_feedback, for the synthesizer's retry, holds
software text only):
- ``not_empty``: the consensus has text.
- ``no_scaffolding``: it holds none of the prompt's scaffolding: this debate's fence marker, a fence of
  any debate ("<<<DATA-...", "DATA-...>>>", and their escaped forms; in any case), a fence label ("ANSWER OF
  PANELIST"), the claim-map blocks' headings and "Claim N (kind): asserted by" lines, or any line of
  our prompt templates (each run of 24 characters or more and 4 words or more of their literal text,
  compared case- and space-insensitively).
- ``majority_answer``: on a closed-form round (``closed``: agreement.answers_are_open was false), the
  answer the consensus states, read with agreement.extract_answer for the agreement's kind - the code
  eval scores it with - is the verified majority: the same number, the same letter, the same yes/no,
  or for a short text every content word of the majority among the reading's and no other position's
  content that the majority lacks; a majority that is an option letter ("A.", "B. television") among
  text answers is read as a choice. On a tie (no majority) it passes only when the text says the panel
  is split (in English or the panel's main languages). Open rounds pass: the claim map reports them.
- ``labels_exist``: every panelist label the text names ("Panelist C", "Panelists A and D") exists.
- ``quotes_verbatim``: every quotation attributed to a label - a quoted span ("...", “...”, «...»,
  „...“) after a label in the same sentence, or right before one ("...", said Panelist B) - occurs in
  that panelist's answer (claims.quote_in: case, spaces and typography normalised).
- ``language``: when detection is confident, the text is in the debate's language, or one written in
  the same script that detection cannot tell apart (Hindi/Marathi/Nepali, Arabic/Urdu/Sindhi/Persian,
  Bengali/Assamese). Quotations, labels and numbers are left out first. A Latin-script text of fewer
  than 12 distinct words passes (langdetect guesses those at random, and sure of itself, and a small
  model's repetitions, "Answer: C. Answer C. ...", read as German), and so does a text of
  which 20 % or more of the words are the debate language's function words (agreement.FUNCTION_WORDS);
  otherwise language.detect_language must settle on a language rather than its default to reject.
- ``no_false_unanimity``: the text does not call the panel unanimous ("unanimous", "all panelists
  agree", ...) unless the agreement score is 1 and every seat answered.
Answers are read only to look quotations up: nothing a panelist wrote (a forged "agreement score
1.00") can change what a check decides about the consensus.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache

from consensus.agreement import (
    FUNCTION_WORDS,
    NAMES_NO_OPTION,
    content_words,
    extract_answer,
    negated,
    normalize_answer,
    normalize_text,
    parse_choice,
    same_position,
)
from consensus.claims import CLAIM_MAP_HEADING, CONTESTED_HEADING, label_letter, normalize_quote, quote_in
from consensus.language import detect_language, language_name
from consensus.prompts import TEMPLATES, load_template
from consensus.types import Agreement, Check

__all__ = [
    "CHECKS",
    "check_consensus",
    "guard_passed",
    "majority_answer_consensus_text",
    "rejection_feedback",
    "scaffolding_check",
    "tie_break_answer",
]

CHECKS = (
    "not_empty",
    "no_scaffolding",
    "majority_answer",
    "labels_exist",
    "quotes_verbatim",
    "language",
    "no_false_unanimity",
)

# Case-insensitive: a model echoes the fence as "Data-869a5327cf96>>>" too.
_FENCE = re.compile(
    r"(?:<<<|‹‹‹)\s*DATA-[0-9a-f]{4,}|DATA-[0-9a-f]{4,}\s*(?:>>>|›››)|\bDATA-[0-9a-f]{12}\b", re.IGNORECASE
)
_FENCE_LABELS = ("ANSWER OF PANELIST", "[marker removed]")
_CLAIM_HEADER = re.compile(r"\bClaim \d+ \((?:agreed|contested|unique)\): asserted by")  # claims._claim_block
_LABEL_WORD = r"(?i:\b(?:panel(?:l)?ists?|panelistas?|pan[eé]listes?|panellisti|पैनलिस्ट|پینلسٹ))"
_MENTION = re.compile(
    _LABEL_WORD + r"\s+([A-Z](?:\s*(?:,|&|\band\b|\bor\b|\by\b|\bet\b|\bund\b|\be\b|\bo\b)\s*[A-Z])*)\b"
)
_QUOTED = re.compile(r'"([^"\n]+)"|“([^”\n]+)”|«\s*([^»\n]+?)\s*»|„([^“”\n]+)[“”]')
_SENTENCE_BREAK = re.compile(r"[.!?।]\s|\n")
_SPLIT = re.compile(
    r"(?i)\b(?:split|divided(?! by)|no (?:clear )?majority|tie[ds]?\b|dividid[oa]|sin mayor[ií]a|empate|divis[ée]e?|partag[ée]e?"
    r"|pas de majorit[ée]|[ée]galit[ée]|gespalten|uneinig|keine mehrheit|sem maioria|diviso|nessuna maggioranza)"
    r"|बंटा|विभाजित|منقسم|تقسیم"
)
_UNANIMOUS = re.compile(
    r"(?i)\b(?:unanim\w*|un[áâ]nime\w*|einstimmig\w*|all (?:(?:three|four|five|six|seven|the|of the) )?panel(?:l)?ists"
    r" (?:agree|concur)\w*|every panel(?:l)?ist agrees|the (?:whole|entire) panel agrees|full agreement"
    r"|complete agreement|todos los panelistas coinciden|tous les pan[ée]listes)"
)
_DIGITS = re.compile(r"[\d$€£₹¥%.,:;=+*/()\-]+")
_LETTERS = re.compile(r"[^\W\d_]")
_BEYOND_LATIN = re.compile(r"[^\W\d_\u0000-\u024f]")
_MIN_WORDS = 12  # langdetect guesses a Latin-script text of fewer words at random, and sure of itself
_FUNCTION_SHARE = 0.2  # prose in a language is ~30-50 % its function words; another language's prose ~0-10 %
_SCRIPT_FAMILIES = (
    frozenset({"hi", "mr", "ne", "sa", "mai", "kok", "doi", "brx"}),
    frozenset({"ar", "ur", "sd", "ks", "fa", "ps"}),
    frozenset({"bn", "as"}),
)
# The label of the majority fallback, and the words for a split panel, in the panel's main languages.
MAJORITY_LABELS = {
    "en": "Majority answer",
    "es": "Respuesta de la mayoría",
    "fr": "Réponse de la majorité",
    "de": "Antwort der Mehrheit",
    "pt": "Resposta da maioria",
    "it": "Risposta della maggioranza",
    "hi": "बहुमत का उत्तर",
    "ar": "إجابة الأغلبية",
    "ur": "اکثریت کا جواب",
}
SPLIT_LABELS = {
    "en": "The panel is split",
    "es": "El panel está dividido",
    "fr": "Le panel est divisé",
    "de": "Das Panel ist gespalten",
    "pt": "O painel está dividido",
    "it": "Il panel è diviso",
    "hi": "पैनल बंटा हुआ है",
    "ar": "اللجنة منقسمة",
    "ur": "پینل منقسم ہے",
}
# The line under a split closed-form panel's tied positions that names the tie-break's answer: the vote's rule (the
# earlier seat's position), labelled so that nobody reads it as a majority.
TIE_BREAK_LABELS = {
    "en": "Tie-break by seat order, not a majority",
    "es": "Desempate por orden de asiento, no una mayoría",
    "fr": "Départage par ordre des sièges, pas une majorité",
    "de": "Stichentscheid nach Sitzreihenfolge, keine Mehrheit",
    "pt": "Desempate pela ordem dos assentos, não uma maioria",
    "it": "Spareggio per ordine dei seggi, non una maggioranza",
    "hi": "सीट क्रम से टाई-ब्रेक, बहुमत नहीं",
    "ar": "كسر التعادل بترتيب المقاعد، وليس أغلبية",
    "ur": "نشستوں کی ترتیب سے ٹائی بریک، اکثریت نہیں",
}
_TIE_BREAK_LINE = re.compile(
    r"^(?:" + "|".join(re.escape(v) for v in TIE_BREAK_LABELS.values()) + r"):[ \t]*(?P<answer>\S.*)$", re.MULTILINE
)
_FEEDBACK = {
    "not_empty": "The consensus was empty: write the consensus answer.",
    "no_scaffolding": "The consensus repeated the prompt's scaffolding (fence markers, block headings or "
    "instructions): write only the answer, in your own words.",
    "majority_answer": "The consensus did not state the panel's majority answer as its answer: state the majority "
    "answer (or, when the panel is split, say that it is split) and report the minority under Dissent.",
    "labels_exist": "The consensus named a panelist label that does not exist: name panelists only by the labels "
    "given (Panelist A, B, ...).",
    "quotes_verbatim": "The consensus quoted a panelist for words that are not in that panelist's answer: quote only "
    "words copied exactly from the answer, or do not quote.",
    "language": "The consensus was not written in the debate's language: write all of it in {language}.",
    "no_false_unanimity": "The consensus called the panel unanimous, but the panel is not unanimous or not every "
    "panelist answered: report the agreement as measured.",
}


def _primary(code: str) -> str:
    return code.split("-")[0].lower()


@cache
def _template_lines() -> tuple[str, ...]:
    """The literal text of every prompt template, as runs long enough that no consensus says them by chance."""
    runs = {CLAIM_MAP_HEADING, CONTESTED_HEADING}
    for name in TEMPLATES:
        for line in load_template(name).template.splitlines():
            for part in re.split(r"\$(?:\w+|\{\w+\})", line):
                run = " ".join(part.split()).strip(" -;.")
                if len(run) >= 24 and len(run.split()) >= 4:
                    runs.add(run)
    return tuple(sorted(normalize_quote(r) for r in runs))


def scaffolding_check(text: str, marker: str) -> Check:
    """The ``no_scaffolding`` check alone: cheap enough to run on a consensus while it streams in."""
    return _scaffolding(text, marker)


def _scaffolding(text: str, marker: str) -> Check:
    found = [marker] if marker and marker.casefold() in text.casefold() else []
    found += [m.group(0) for m in _FENCE.finditer(text)][:3]
    found += [label for label in _FENCE_LABELS if label in text]
    found += [m.group(0) for m in _CLAIM_HEADER.finditer(text)][:1]
    flat = normalize_quote(text)
    found += [f"template text {line[:40]!r}" for line in _template_lines() if line in flat][:3]
    if found:
        return Check(
            name="no_scaffolding", passed=False, detail="prompt scaffolding in the consensus: " + "; ".join(found)
        )
    return Check(name="no_scaffolding", passed=True)


def _letters(mention: str) -> list[str]:
    return re.findall(r"\b[A-Z]\b", mention)


def _states_text(reading: str, majority: str, others: Sequence[str]) -> bool:
    """Whether a closed-form text reading states the majority's answer (see the module docstring)."""
    said, right = normalize_answer(reading, "text"), normalize_answer(majority, "text")
    if right.polarity is not None:  # yes/no; without the word, a negation is a no ("91 is not prime")
        stated = said.polarity if said.polarity is not None else not negated(said.key)
        return stated == right.polarity
    want, have = content_words(right.key), content_words(said.key)
    if not want:
        return same_position(said, right)
    if not want <= have or not set(re.findall(r"\d+", right.key)) <= set(re.findall(r"\d+", said.key)):
        return False
    return not any((c := content_words(normalize_text(o))) and c <= have and not c <= want for o in others)


# A consensus may spell a small number out ("Four."): read as its digits when no digit is written.
_NUMBER_WORDS = {
    w: n
    for n, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORD = re.compile(r"\b(?:" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)


def _majority(text: str, agreement: Agreement, closed: bool, choices: Sequence[str] | None) -> Check:
    name = "majority_answer"
    if not closed:
        return Check(name=name, passed=True, detail="open answers: not a closed-form answer to compare")
    if agreement.tie:
        split = bool(_SPLIT.search(text))
        detail = "no majority (tie): " + (
            "the text says the panel is split" if split else "the text does not say the panel is split"
        )
        return Check(name=name, passed=split, detail=detail)
    kind, majority = agreement.kind, agreement.majority
    if kind == "none" or majority is None:
        return Check(name=name, passed=True, detail="no answers to compare")
    if kind == "text" and parse_choice(majority):  # an option letter among text answers ("A." with "Yes"): a letter
        kind = "choice"
    read = extract_answer(text, kind, choices)
    if read is None and kind == "number":
        read = extract_answer(_NUMBER_WORD.sub(lambda m: str(_NUMBER_WORDS[m.group(0).lower()]), text), kind)
    if read is None:
        return Check(
            name=name, passed=False, detail=f"no {kind} answer can be read; the verified majority is {majority!r}"
        )
    if kind == "number":
        ok = read == normalize_answer(majority, "number").key
    elif kind == "choice":
        ok = read == (parse_choice(majority) or majority)
    else:
        others = [c.answer for c in agreement.clusters if c.panelists != agreement.majority_panelists]
        ok = _states_text(read, majority, others)
    said = read if len(read) <= 80 else read[:77] + "..."
    detail = f"states {said!r}; the verified majority is {majority!r}"
    return Check(name=name, passed=ok, detail=detail)


def _mentions(text: str) -> list[tuple[int, int, list[str]]]:
    return [(m.start(), m.end(), _letters(m.group(1))) for m in _MENTION.finditer(text)]


def _labels(mentions: Sequence[tuple[int, int, list[str]]], letters: Mapping[str, str]) -> Check:
    unknown = sorted({x for _, _, xs in mentions for x in xs if x not in letters})
    if unknown:
        detail = "names " + ", ".join(f"Panelist {x}" for x in unknown) + f"; the panel is {', '.join(sorted(letters))}"
        return Check(name="labels_exist", passed=False, detail=detail)
    return Check(name="labels_exist", passed=True)


def _speaker(text: str, start: int, end: int, mentions: Sequence[tuple[int, int, list[str]]]) -> list[str]:
    """The labels a quotation at text[start:end] is attributed to: the last mention before it in its sentence, else
    a mention right after it."""
    before = [m for m in mentions if m[1] <= start and start - m[1] <= 120]
    if before and not _SENTENCE_BREAK.search(text, before[-1][1], start):
        return before[-1][2]
    after = [m for m in mentions if m[0] >= end and m[0] - end <= 30]
    if after and not _SENTENCE_BREAK.search(text, end, after[0][0]):
        return after[0][2]
    return []


def _quotes(
    text: str, mentions: Sequence[tuple[int, int, list[str]]], letters: Mapping[str, str], answers: Mapping[str, str]
) -> Check:
    bad: list[str] = []
    checked = 0
    for m in _QUOTED.finditer(text):
        quote = next(g for g in m.groups() if g is not None)
        who = [x for x in _speaker(text, m.start(), m.end(), mentions) if x in letters]
        if not who:
            continue
        checked += 1
        if not any(quote_in(quote, answers.get(letters[x], "")) for x in who):
            bad.append(f"Panelist {'/'.join(who)}: {quote[:60]!r}")
    if bad:
        return Check(name="quotes_verbatim", passed=False, detail="not in the quoted answer: " + "; ".join(bad))
    return Check(name="quotes_verbatim", passed=True, detail=f"{checked} quotation(s) found in the answers")


def confident_language(text: str) -> str | None:
    """The language of `text` when detection is confident (by script, or langdetect sure of it), else None."""
    return detect_language(text, default="") or None


def _same_language(a: str, b: str) -> bool:
    a, b = _primary(a), _primary(b)
    return a == b or any(a in f and b in f for f in _SCRIPT_FAMILIES)


def _language(text: str, language: str, mentions: Sequence[tuple[int, int, list[str]]]) -> Check:
    name, want = "language", _primary(language)
    prose = text
    for start, end, _ in reversed(mentions):  # "Panelist A" is ours, in English: not the consensus's language
        prose = prose[:start] + " " + prose[end:]
    prose = _DIGITS.sub(" ", _QUOTED.sub(" ", prose))
    latin = prose.isascii() or len(_BEYOND_LATIN.findall(prose)) <= len(_LETTERS.findall(prose)) // 2
    words = normalize_text(prose).split()
    if latin and len(set(words)) < _MIN_WORDS:
        return Check(name=name, passed=True, detail="too few distinct words to tell the language")
    # A text full of the debate language's function words is in it: no need to ask langdetect, the costly part.
    function_words = FUNCTION_WORDS.get(want, frozenset())
    share = sum(w in function_words for w in words) / max(1, len(words))
    if share >= _FUNCTION_SHARE:
        return Check(name=name, passed=True, detail=f"{share:.0%} of its words are function words of {want}")
    guess = confident_language(prose)
    if guess is None or _same_language(guess, want):
        return Check(name=name, passed=True, detail=f"detected {guess}" if guess else "not confident of its language")
    return Check(name=name, passed=False, detail=f"detected {guess}; the debate is in {want}")


def _unanimity(text: str, agreement: Agreement, seats: int | None) -> Check:
    answered = sum(len(c.panelists) for c in agreement.clusters)
    for m in _UNANIMOUS.finditer(text):
        before = normalize_text(text[max(0, m.start() - 25) : m.start()]).split()[-3:]
        if negated(" ".join(before)):
            continue  # "not unanimous"
        if agreement.score < 1:
            detail = f"says {m.group(0)!r}; the agreement is {agreement.score:.2f}"
            return Check(name="no_false_unanimity", passed=False, detail=detail)
        if seats is not None and answered < seats:
            detail = f"says {m.group(0)!r}; {answered} of {seats} seats answered"
            return Check(name="no_false_unanimity", passed=False, detail=detail)
    return Check(name="no_false_unanimity", passed=True)


def check_consensus(
    text: str,
    *,
    marker: str,
    agreement: Agreement,
    answers: Mapping[str, str],
    labels: Mapping[str, str],
    language: str,
    closed: bool,
    choices: Sequence[str] | None = None,
    seats: int | None = None,
) -> list[Check]:
    """Every check of the module docstring on a consensus `text`, in order.

    `marker` is the debate's fence marker; `agreement` the final round's verified agreement; `answers` maps each
    panelist's name to the answer the synthesizer was shown; `labels` each anonymous label ("Panelist A") to its
    panelist's name; `language` the debate's language code; `closed` whether the round's answers are closed-form
    (not agreement.answers_are_open); `choices` a choice item's option texts, when known (as in eval); `seats` how
    many panelists the panel has (a unanimity the missing seats did not share is rejected).
    """
    letters = {x: name for label, name in labels.items() if (x := label_letter(label))}
    mentions = _mentions(text)
    return [
        Check(name="not_empty", passed=bool(text.strip()), detail="" if text.strip() else "the consensus is empty"),
        _scaffolding(text, marker),
        _majority(text, agreement, closed, choices),
        _labels(mentions, letters),
        _quotes(text, mentions, letters, answers),
        _language(text, language, mentions),
        _unanimity(text, agreement, seats),
    ]


def guard_passed(checks: Sequence[Check]) -> bool:
    """Whether every check passed."""
    return all(c.passed for c in checks)


def rejection_feedback(checks: Sequence[Check], language: str) -> str:
    """Why a consensus was rejected, for the synthesizer's retry: fixed software sentences, no model text."""
    return "\n".join("- " + _FEEDBACK[c.name].format(language=language_name(language)) for c in checks if not c.passed)


def _label(table: Mapping[str, str], language: str) -> str:
    return table.get(_primary(language), table["en"])


def tie_break_answer(text: str) -> str | None:
    """The answer a split consensus names on its tie-break line (majority_answer_consensus_text), or None."""
    found = _TIE_BREAK_LINE.findall(text)
    return found[-1].strip() if found else None


def majority_answer_consensus_text(
    agreement: Agreement,
    answers: Mapping[str, str],
    language: str,
    *,
    closed: bool = True,
    choices: Sequence[str] | None = None,
) -> str:
    """The consensus built from the verified majority when no synthesis passed the guard: the majority's answer
    verbatim, labelled as the majority answer in the debate's language (English when the language has no label).

    Closed-form: the first majority panelist's whole answer followed by "<label>: <final answer>", or only that line
    when the whole answer would be read as another answer (with that line; and alone, unless the answer is a
    number), or holds prompt scaffolding. Open: "<label>:" and that panelist's whole answer (its final answer when the whole one holds
    scaffolding). A tie has no majority: "<the panel is split>:" and each tied position's answer, one a line; on a
    closed-form round then "<tie-break by seat order, not a majority>: <the earlier seat's position>", the answer the
    votes' tie-break gives (tie_break_answer reads it back); an answer that names none of a question's options is
    passed over, and with no other position there is no such line.
    """
    if agreement.majority is None:
        return ""
    if agreement.tie:
        best = len(agreement.majority_panelists)
        tied = [c.answer for c in agreement.clusters if len(c.panelists) == best]
        text = f"{_label(SPLIT_LABELS, language)}:\n" + "\n".join(f"- {a}" for a in tied)
        # The earlier seat's position, as the votes break a tie; one that names no option is unreadable to them.
        lean = next((a for a in tied if not a.startswith(NAMES_NO_OPTION)), None)
        return f"{text}\n\n{_label(TIE_BREAK_LABELS, language)}: {lean}" if closed and lean else text
    label = _label(MAJORITY_LABELS, language)
    whole = next((answers[p].strip() for p in agreement.majority_panelists if answers.get(p, "").strip()), "")
    if whole and not _scaffolding(whole, "").passed:  # a panelist that echoed the prompt: its final answer only
        whole = ""
    if not closed:
        return f"{label}:\n\n{whole or agreement.majority}"
    line = f"{label}: {agreement.majority}"
    if whole and normalize_quote(whole) != normalize_quote(agreement.majority):
        candidate = f"{whole}\n\n{line}"
        # A letter or a name is read alone too: "A. Visible" above "Majority answer: Ultraviolet" contradicts it (a
        # number is not: a worked answer ends with other numbers than its result).
        alone = agreement.kind == "number" or _majority(whole, agreement, True, choices).passed
        if alone and _majority(candidate, agreement, True, choices).passed:
            return candidate
    return line
