"""`consensus ask --follow-up ID` and `consensus chat` end to end: CLI -> engine -> LiteLLM -> loopback stub, with
the thread read from (and stored in) the service's store."""

from __future__ import annotations

import asyncio
import json

from consensus.engine import DebateOptions, debate
from consensus.providers.fake import ScriptedProvider, Step
from consensus.types import DebateStatus
from service.store import Store
from tests.contract.test_cli import cli
from tests.helpers import SEATS, ans, make_panel, write_panel

OWN = "YOUR OWN EARLIER FINAL ANSWER TO QUESTION 1"


def user_prompt(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def script(stub, final: str) -> None:
    for n in SEATS:
        stub.script(n, [{"text": ans(final)}, *([{"text": f"The panel agrees: {final}."}] if n == "alice" else [])])


def stored_first_debate(url: str) -> str:
    """A finished debate in the store, as the service would have left it: each seat explains its answer its way."""

    async def go() -> str:
        fake = ScriptedProvider(script={n: [Step(final="4", text=f"{n} counted to 4")] for n in SEATS})
        result = await debate("What is 2 + 2?", make_panel(SEATS, max_rounds=0), fake, DebateOptions(language="en"))
        store = Store(url)
        await store.migrate()
        running = result.model_copy(update={"status": DebateStatus.running})
        await store.create_debate(running, {"question": result.question}, None, None, "test", 5.0)
        await store.finish(result.id, result, [], "test")
        await store.close()
        return result.id

    return asyncio.run(go())


def test_ask_follow_up_continues_a_stored_thread_and_stores_the_new_debate(tmp_path, stub):
    url = f"sqlite+aiosqlite:///{tmp_path}/consensus.db"
    first = stored_first_debate(url)
    script(stub, "4")
    panel = write_panel(tmp_path / "panel.toml", make_panel(stub=stub, max_rounds=0))
    p = cli("ask", "And why?", "--follow-up", first, "--panel-file", str(panel), "--json", env={"DATABASE_URL": url})
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["status"] == "completed" and r["language"] == "en"
    for name in SEATS:
        prompt = user_prompt(stub.requests(name)[0])
        assert "What is 2 + 2?" in prompt and f"{name} counted to 4" in prompt[prompt.index(OWN) :]

    async def thread() -> list[str]:
        store = Store(url)
        rows = await store.thread(first)
        await store.close()
        return [row.id for row in rows]

    assert asyncio.run(thread()) == [first, r["id"]]
    missing = cli("ask", "And why?", "--follow-up", "f" * 32, "--panel-file", str(panel), env={"DATABASE_URL": url})
    assert missing.returncode != 0 and "--follow-up" in missing.stderr


def test_chat_makes_each_line_a_follow_up_and_ctrl_d_ends_it_cleanly(tmp_path, stub):
    import os
    import subprocess
    import sys

    script(stub, "4")
    panel = write_panel(tmp_path / "panel.toml", make_panel(stub=stub, max_rounds=0))
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("CONSENSUS_PANEL", None)
    p = subprocess.run(
        [sys.executable, "-m", "consensus", "chat", "--panel-file", str(panel)],
        input="What is 2 + 2?\nAnd why is that?\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "Session ended" in p.stderr
    second = user_prompt(stub.requests("bob")[1])
    assert "What is 2 + 2?" in second and "The panel agrees: 4." in second and "And why is that?" in second
    assert "YOUR OWN EARLIER FINAL ANSWER TO QUESTION 1" in second
