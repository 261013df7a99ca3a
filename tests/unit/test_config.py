"""Panel files: valid ones load; every bad one names the file and the field."""

import pytest

from consensus.config import check_keys, default_local_panel, load_panel, load_panel_file, panel_from_shortcut
from consensus.errors import ConfigError, MissingKeyError

GOOD = """
[debate]
max_rounds = 3
agreement_threshold = 0.9
[[panelist]]
name = "gpt"
model = "openai/gpt-4o-mini"
api_key_env = "MY_OPENAI_KEY"
temperature = 0.7
[[panelist]]
name = "local"
model = "local/smollm2"
[synthesizer]
panelist = "gpt"
"""


def write(tmp_path, text):
    p = tmp_path / "panel.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_a_good_file_loads(tmp_path):
    panel = load_panel_file(write(tmp_path, GOOD))
    assert [s.name for s in panel.panelists] == ["gpt", "local"]
    assert panel.debate.max_rounds == 3 and panel.synthesizer.name == "gpt"
    assert panel.panelists[1].context_window == 2048  # local seats get a prompt budget


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (GOOD.replace("temperature = 0.7", "temprature = 0.7"), "panelist[0].temprature", "unknown field"),
        (GOOD.replace('model = "local/smollm2"', ""), "panelist[1].model", "required"),
        (GOOD.replace('name = "local"', 'name = "gpt"'), "panelist[1].name", "duplicate"),
        (GOOD.replace("max_rounds = 3", "max_rounds = -1"), "debate.max_rounds", "greater than or equal"),
        (GOOD.replace('panelist = "gpt"', 'panelist = "nobody"'), "synthesizer.panelist", "nobody"),
        (GOOD + "\n[extra]\nx=1\n", "extra", "unknown"),
        (GOOD + "\n[extra]\nx=1\n", "extra", "analyst"),  # the hint lists every table
        (GOOD.replace('model = "local/smollm2"', 'modle = "local/smollm2"'), "panelist[1].modle", "did you mean model"),
        (GOOD + '\n[analyst]\nmodle = "openai/judge"\n', "analyst.modle", "did you mean model"),
        (GOOD.replace('panelist = "gpt"', 'panelst = "gpt"'), "synthesizer.panelst", "did you mean panelist"),
        (GOOD + '\n[analyst]\npanelist = "gpt"\nmodle = "x"\n', "analyst.modle", "did you mean model"),
        (GOOD + '\n[analyst]\npanelist = "gpt"\nmodel = "x"\n', "analyst.model", "not both"),
        (GOOD.replace("max_rounds = 3", "max_round = 3"), "debate.max_round", "did you mean max_rounds"),
        ("[[panelist]]\nname='a'\nmodel='openai/a'\n", "panelist", "2 to 7"),
        (
            GOOD.replace("temperature = 0.7", 'transport = "openai-compatible"'),
            "panelist[0].transport",
            "needs api_base",
        ),
        (
            GOOD.replace("temperature = 0.7", 'api_base = "127.0.0.1:8000/v1"\ntransport = "openai-compatible"'),
            "panelist[0].transport",
            "http(s) URL",
        ),
        (
            GOOD.replace(
                'model = "local/smollm2"',
                'model = "local/smollm2"\napi_base = "http://h/v1"\ntransport = "openai-compatible"',
            ),
            "panelist[1].transport",
            "in-process",
        ),
        (
            GOOD.replace("temperature = 0.7", 'transport = "http"'),
            "panelist[0].transport",
            "'litellm' or 'openai-compatible'",
        ),
    ],
)
def test_bad_files_name_file_and_field(tmp_path, text, field, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_panel_file(path)
    assert info.value.field == field and words in info.value.message and str(path) in str(info.value)


def test_unreadable_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_panel_file(write(tmp_path, "[[panelist]\nname="))
    with pytest.raises(ConfigError, match="cannot read"):
        load_panel_file(tmp_path / "nope.toml")


def test_missing_key_env_is_named_before_anything_runs(tmp_path):
    panel = load_panel_file(write(tmp_path, GOOD))
    with pytest.raises(MissingKeyError, match="MY_OPENAI_KEY"):
        check_keys(panel, env={})
    check_keys(panel, env={"MY_OPENAI_KEY": "sk-test"})


def test_a_model_no_provider_serves_is_named_before_anything_runs(monkeypatch):
    """`mymodel` passed the checks and failed at every call as LiteLLM's "LLM Provider NOT provided"."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # LiteLLM reads its keys from the environment itself
    for shortcut in ("mymodel,openai/b", "openai/a,mymodel"):
        with pytest.raises(ConfigError, match="which provider serves 'mymodel'") as info:
            check_keys(panel_from_shortcut(shortcut), env={"OPENAI_API_KEY": "sk-test"})
        assert info.value.field == "mymodel.model"
    check_keys(panel_from_shortcut("gpt-4o-mini,openai/b"), env={"OPENAI_API_KEY": "sk-test"})  # LiteLLM knows it


def test_shortcut_and_default_panel(tmp_path):
    p = panel_from_shortcut("openai/gpt-4o-mini,anthropic/claude-3-5-haiku-latest,gemini/gemini-2.0-flash")
    assert [s.name for s in p.panelists] == ["gpt-4o-mini", "claude-3-5-haiku-latest", "gemini-2.0-flash"]
    with pytest.raises(MissingKeyError, match="OPENAI_API_KEY"):
        check_keys(p, env={})
    assert load_panel(env={"CONSENSUS_PANEL": "openai/a,openai/b"}).panelists[1].name == "b"
    assert load_panel(env={"CONSENSUS_PANEL_FILE": str(write(tmp_path, GOOD))}).source.endswith("panel.toml")
    local = load_panel(env={})
    assert local == default_local_panel() and len(local.panelists) == 3
    assert len({(s.temperature, s.seed, s.persona) for s in local.panelists}) == 3
    with pytest.raises(ConfigError, match="2 to 7"):
        panel_from_shortcut("openai/only-one")


def test_lean_client_seats_skip_litellm_provider_checks_but_not_their_keys(tmp_path):
    """`my-model` on a vLLM server: no LiteLLM provider prefix, and none needed on the lean client."""
    text = GOOD.replace(
        'model = "openai/gpt-4o-mini"',
        'model = "my-org/my-model"\napi_base = "http://10.0.0.5:8000/v1"\ntransport = "openai-compatible"',
    )
    panel = load_panel_file(write(tmp_path, text))
    assert panel.panelists[0].wire_model == "my-org/my-model"
    check_keys(panel, env={"MY_OPENAI_KEY": "k"})
    with pytest.raises(MissingKeyError, match="MY_OPENAI_KEY"):
        check_keys(panel, env={})
    litellm_seat = load_panel_file(write(tmp_path, text.replace('transport = "openai-compatible"', "")))
    with pytest.raises(ConfigError, match="which provider serves 'my-org/my-model'"):
        check_keys(litellm_seat, env={"MY_OPENAI_KEY": "k"})
