"""One fault vocabulary: each fault of FAULTS means the same error to the gateway on the stub as to the fakes."""

import pytest

from consensus.errors import ProviderError
from consensus.providers.fake import FAULTS, FunctionProvider, ScriptedProvider, Step
from consensus.types import DebateSettings, Message, Seat

MESSAGES = [Message(role="user", content="What is 2+2?")]
TEXT = "a long answer that breaks off in the middle"


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("transport", ["litellm", "openai-compatible"])
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_fault_is_the_same_error_from_the_stub_and_from_the_fakes(stub, gateway, fault, transport, streamed):
    step = Step(text=TEXT, fault=fault, retry_after=0)
    seat = Seat(name="alice", model="openai/alice", api_base=stub.api_base, transport=transport)
    sink = (lambda _text, restart=False: None) if streamed else None
    timeout_s = 0.5 if fault == "hang" else 30  # LiteLLM's first call imports for seconds
    stub.script("alice", [step])
    with pytest.raises(ProviderError) as over_http:
        await gateway(DebateSettings(max_attempts=1)).complete(seat, MESSAGES, timeout_s=timeout_s, on_delta=sink)
    for fake in (ScriptedProvider(script={"alice": [step]}), FunctionProvider(lambda _seat, _messages: step)):
        with pytest.raises(ProviderError) as faked:
            await fake.complete(seat, MESSAGES, timeout_s=timeout_s, on_delta=sink)
        assert faked.value.kind == over_http.value.kind, (fault, transport, streamed)
    assert over_http.value.kind == ("malformed" if fault == "cut" and not streamed else FAULTS[fault].kind)
    if FAULTS[fault].status is not None:
        assert over_http.value.status_code == faked.value.status_code == FAULTS[fault].status
