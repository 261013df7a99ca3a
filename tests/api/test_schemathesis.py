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
