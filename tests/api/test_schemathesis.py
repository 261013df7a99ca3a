"""Schemathesis over /openapi.json of the real service: no input produces a server error."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error


@pytest.fixture
def api_schema(service, stub):
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    schema.config.base_url = service.url
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_gives_a_server_error(case):
    case.call_and_validate(checks=[not_a_server_error], timeout=30)


def test_the_schema_states_the_panels_question_limit(make_service, stub):
    import httpx

    from tests.api.conftest import stub_panel

    service = make_service(stub_panel(stub, max_question_chars=1234))
    schemas = httpx.get(f"{service.url}/openapi.json").json()["components"]["schemas"]
    assert schemas["DebateRequest"]["properties"]["question"] | {"title": None} == {
        "type": "string",
        "minLength": 1,
        "maxLength": 1234,
        "description": "the question for the panel",
        "title": None,
    }
    with service.client() as c:  # what it states is what is enforced
        assert c.post("/v1/debates", json={"question": "x" * 1235}).status_code == 422
