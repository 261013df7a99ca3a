"""What the CLI prints from models and panel files is shown as written: never read as Rich markup."""

from __future__ import annotations

from consensus import cli
from consensus.engine import DebateOptions, debate
from consensus.providers.fake import ScriptedProvider, Step
from consensus.types import RoundCompleted
from tests.helpers import make_panel

NASTY = ("a[/]b", "[bold magenta]PWNED[/bold magenta]", "[link=http://x.example]click[/link]")


async def test_model_text_and_seat_names_print_literally():
    """A final answer of `a[/]b` crashed `consensus ask` (MarkupError) after the whole debate had run."""
    names = ("[/]", "[red]", "c", "d")
    finals = (NASTY[0], *NASTY)  # two seats agree on `a[/]b`: it is the majority line's text too
    fake = ScriptedProvider(script={n: [Step(final=f)] for n, f in zip(names, finals, strict=True)})
    r = await debate("Q?", make_panel(names, max_rounds=0), fake, DebateOptions(language="en"))
    with cli.out.capture() as cap:
        cli.print_result(r)
    shown = cap.get()
    assert all(f in shown for f in NASTY) and "[/] (openai/[/])" in shown
    assert r.consensus is not None and repr(r.consensus.majority) in shown


def panels_shown(path, text, monkeypatch):
    """What `consensus panels` prints for a panel file with this text (wide enough for every column)."""
    path.write_text(text)
    monkeypatch.setattr(cli.out, "width", 200)
    with cli.out.capture() as cap:
        cli.panels(panel_file=path, as_json=False)
    return cap.get()


def test_panels_prints_names_and_personas_literally(tmp_path, monkeypatch):
    shown = panels_shown(
        tmp_path / "[weird].toml",
        '[[panelist]]\nname = "[/]"\nmodel = "openai/x"\n'
        'persona = "[bold]loud[/bold]"\n[[panelist]]\nname = "b"\nmodel = "openai/y"\n',
        monkeypatch,
    )
    assert "│ [/]  │" in shown and "[bold]loud[/bold]" in shown and "synthesizer: [/] (openai/x)" in shown


def test_panels_shows_each_seats_transport(tmp_path, monkeypatch):
    shown = panels_shown(
        tmp_path / "panel.toml",
        '[[panelist]]\nname = "lean"\nmodel = "openai/x"\n'
        'api_base = "http://127.0.0.1:9/v1"\ntransport = "openai-compatible"\n'
        '[[panelist]]\nname = "b"\nmodel = "openai/y"\n',
        monkeypatch,
    )
    rows = {line.split("│")[1].strip(): line for line in shown.splitlines() if line.count("│") > 3}
    assert "openai-compatible" in rows["lean"] and "litellm" in rows["b"] and "openai-compatible" not in rows["b"]


async def test_a_tie_is_printed_as_no_majority():
    """A 1-1-1 split was printed as "majority 'a[/]b'": the seat-order tie-break is the vote's, not a majority."""
    fake = ScriptedProvider(script={n: [Step(final=f)] for n, f in zip("abc", ("3", "4", "5"), strict=True)})
    r = await debate("Q?", make_panel("abc", max_rounds=0), fake, DebateOptions(language="en"))
    with cli.out.capture() as cap:
        cli.print_result(r)
    assert "no majority (a tie: 1-1-1)" in cap.get() and "majority '3'" not in cap.get()


def test_the_live_view_starts_a_stream_over_when_told():
    """A retried call (or a fallback synthesizer) starts over: its first delta carries data.restart."""
    from consensus.types import new_event

    view = cli.LiveView(make_panel("ab", max_rounds=0))

    def delta(type_, text, restart=False, who="a"):
        return new_event(
            type_,
            seq=1,
            debate_id="d",
            round=0 if type_ == "answer.delta" else None,
            panelist=who,
            delta=text,
            data={"restart": True} if restart else None,
        )

    for e in (
        delta("answer.delta", "a long ans"),
        delta("answer.delta", "Four.", restart=True),
        delta("answer.delta", " Sure."),
    ):
        view.update(e)
    assert view.text["a"] == "Four. Sure."
    for e in (delta("consensus.delta", "The judge beg"), delta("consensus.delta", "All say 4.", restart=True)):
        view.update(e)
    assert view.consensus == "All say 4."


def test_panels_shows_the_embedded_model_as_its_own_transport_and_the_analyst(tmp_path, monkeypatch):
    """The embedded model runs in-process, never through LiteLLM: `panels` says so, and names the analyst."""
    shown = panels_shown(
        tmp_path / "panel.toml",
        '[[panelist]]\nname = "here"\nmodel = "local/smollm2"\n'
        '[[panelist]]\nname = "b"\nmodel = "openai/y"\n[analyst]\nmodel = "openai/judge"\n',
        monkeypatch,
    )
    rows = {line.split("│")[1].strip(): line for line in shown.splitlines() if line.count("│") > 3}
    assert "│ local " in rows["here"] and "litellm" not in rows["here"] and "litellm" in rows["b"]
    assert "analyst (open answers): analyst (openai/judge, litellm)" in shown


async def test_the_result_shows_the_claim_map_the_checks_and_the_missing_seat():
    """A claims x panelists table (asserts / contradicts / silent), every check, and a missing seat named."""
    import json

    essays = {"a": "Deployment and evaluation matter most", "b": "Deployment, evaluation and cost control"}
    cmap = {
        "claims": [
            {
                "text": "Deployment matters",
                "asserts": [{"panelist": "A", "quote": "Deployment"}, {"panelist": "B", "quote": "Deployment"}],
            },
            {
                "text": "Cost control",
                "asserts": [{"panelist": "B", "quote": "cost control"}],
                "contradicts": [{"panelist": "A", "quote": "evaluation matter most"}],
            },
            {"text": "Ethics", "asserts": [{"panelist": "A", "quote": "ethics above all"}]},  # invented quote
        ],
        "positions": [["A", "B"]],
    }
    script = {
        n: [
            Step(text=json.dumps({"answer": t, "final_answer": t, "confidence": 0.8})),
            Step(text=json.dumps(cmap)),
            Step(text="Both stress deployment; Panelist B adds cost control."),
        ]
        for n, t in essays.items()
    }
    script["c"] = [Step(fault="401")]
    r = await debate(
        "Which skills?", make_panel("abc", max_rounds=0), ScriptedProvider(script=script), DebateOptions(language="en")
    )
    cli.out.width = 200
    with cli.out.capture() as cap:
        cli.print_result(r)
    shown = cap.get()
    rows = {line.split("│")[1].strip(): line for line in shown.splitlines() if line.count("│") >= 5}
    assert "asserts" in rows["Deployment matters"] and "contradicts" in rows["Cost control"]
    assert rows["Cost control"].count("asserts") == 1 and "·" in rows["Cost control"]  # c: silent
    assert "missing: c (no answer): the agreement covers 2 of 3 panelists" in shown
    assert "of 2 of 3 answers (c missing)" in shown and "no_scaffolding" in shown and "majority_answer" in shown
    # The round's header too: an agreement over 2 answers of 3 seats is never a bare percentage.
    [header] = [line for line in shown.splitlines() if "Openings" in line]
    assert f"agreement {r.rounds[0].agreement.score:.0%} of 2 of 3 answers (c missing)" in header, header
    view = cli.LiveView(make_panel("abc", max_rounds=0))
    view.update(RoundCompleted(seq=1, debate_id="d", round=0, round_result=r.rounds[0]))
    with cli.out.capture() as cap:
        cli.out.print(view.render())
    assert "of 2 of 3 answers (c missing)" in cap.get()
    # The attribution whose quote is not in A's answer is dropped, and the result says so.
    [dropped] = [line for line in shown.splitlines() if line.startswith("dropped ")]
    assert "'Ethics'" in dropped and "'ethics above all'" in dropped and "A" in dropped, dropped


async def test_the_majority_fallback_says_why_the_moderator_was_not_used():
    """A guard rejection, a failed moderator and a moderator never asked are three different things to say."""
    failing = ScriptedProvider(script={n: [Step(final="4"), Step(fault="401"), Step(fault="401")] for n in "abc"})
    r = await debate("What is 2+2?", make_panel("abc", max_rounds=0), failing, DebateOptions(language="en"))
    assert r.consensus and r.consensus.majority_because == "failed"
    with cli.out.capture() as cap:
        cli.print_result(r)
    shown = cap.get()
    assert "The moderator model failed; the majority answer is shown instead." in shown
    assert "did not pass the checks" not in shown and "every synthesizer call failed" in shown

    echo = ScriptedProvider(script={n: [Step(final="4"), *[Step(text="Panelist Q says 5.")] * 3] for n in "abc"})
    r = await debate("What is 2+2?", make_panel("abc", max_rounds=0), echo, DebateOptions(language="en"))
    assert r.consensus and r.consensus.majority_because == "rejected", r.consensus
    with cli.out.capture() as cap:
        cli.print_result(r)
    assert "The moderator's text did not pass the checks" in cap.get()
