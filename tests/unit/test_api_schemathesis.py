"""schemathesis against the API's own OpenAPI document, in process: every
operation, with generated valid (positive) and invalid (negative) inputs,
as a cluster admin; no answer may be a server error (5xx).

The operations are driven from schemathesis' own strategies with Hypothesis
here rather than through its pytest plugin, whose lazy-fixture support does
not run under this pytest (9.x). Watches are left out: they are endless
streams, which the in-process client reads to the end; test_api_watch.py
covers them on a real server. Examples are bounded (and derandomized) so
the run stays well under a minute.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from tests.unit.api_support import Api

EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 10}


def _operations(api: Api) -> list[Any]:
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", api.client.app, headers=api.headers("admin")
    ).exclude(path_regex=r"^/v1/watch/")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda m: m.value)
def test_no_operation_answers_with_a_server_error(api: Api, mode: GenerationMode) -> None:
    operations = _operations(api)
    assert len(operations) > 25
    headers = api.headers("admin")
    called: list[str] = []
    statuses: dict[int, int] = {}

    for operation in operations:

        @settings(
            max_examples=EXAMPLES[mode],
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: Any) -> None:
            response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        try:
            call()
        except Unsatisfiable:
            # nothing to make invalid (no parameters, no body): no negative case
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        called.append(operation.label)
    assert len(called) > 20
    secret_routes = "/v1/namespaces/{namespace}/secrets/{name}"
    assert {f"{m} {secret_routes}" for m in ("GET", "PUT", "DELETE")} <= set(called), called
    if mode is GenerationMode.POSITIVE:
        # the token got through (negative cases also mangle the Authorization
        # header, so many of theirs are 401 by design), and many calls succeeded
        assert statuses.get(401, 0) < sum(statuses.values()) / 10, statuses
        assert sum(n for status, n in statuses.items() if status < 300) > len(called), statuses
