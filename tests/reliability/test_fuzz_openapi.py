"""schemathesis fuzzing from the service's own OpenAPI document, in process (ASGI, lifespan on).

Proves: every documented operation, fed schema-generated data (positive) and schema-violating
data (negative), never answers >= 500, every answer -- errors included -- conforms to the
documented response schema, and every 4xx is `{"error": "..."}`."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from service.http.app import create_app
from service.settings import Settings
from tests.reliability.conftest import API_KEY, MODEL, ReliabilityConfig
from tests.reliability.harness import figures
from tests.reliability.harness.v2 import error_shape_problem
from tests.service.model_repo import write_model

MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


def test_openapi_operations_never_fail_and_match_their_schema(
    tmp_path: Path, rel_config: ReliabilityConfig
) -> None:
    write_model(tmp_path / "models", MODEL, 1)
    app = create_app(Settings(repository=tmp_path / "models", api_key=API_KEY))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: collections.Counter[int] = collections.Counter()
    failures: list[str] = []
    unsatisfiable: list[str] = []

    timings: dict[str, float] = {}
    for operation in operations:
        for mode in MODES:
            label = f"{operation.label} [{mode}]"

            @seed(rel_config.seed)
            @settings(max_examples=rel_config.openapi_examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: schemathesis.Case) -> None:
                response = case.call(headers={"Authorization": f"Bearer {API_KEY}"})
                statuses[response.status_code] += 1
                try:
                    case.validate_response(
                        response, checks=[not_a_server_error, response_schema_conformance]
                    )
                    if 400 <= response.status_code < 500:
                        problem = error_shape_problem(response.status_code, response.content)
                        assert problem == "", problem
                except AssertionError as error:  # collected: one run lists every failure
                    failures.append(f"{label}: {str(error)[:600]}\n"  # noqa: B023
                                    f"    reproduce: {case.as_curl_command()}")

            started = time.monotonic()
            try:
                call()
            except Unsatisfiable:  # nothing to violate (e.g. GET /v2 has no parameters)
                unsatisfiable.append(label)
            timings[label] = round(time.monotonic() - started, 2)

    total = sum(statuses.values())
    figures.record("fuzz-openapi", operations=len(operations), requests=total,
                   slowest_s=max(timings.values()), no_negative_cases=len(unsatisfiable),
                   statuses=dict(sorted(statuses.items())), failures=len(failures))
    print(f"fuzz-openapi: {total} requests over {len(operations)} operations, "
          f"statuses {dict(sorted(statuses.items()))}")
    assert len(operations) >= 10, [op.label for op in operations]
    distinct = {f.split(":")[0] + f.split("\n")[0][-80:]: f for f in failures}
    assert failures == [], f"{len(failures)} failures, distinct:\n" + "\n".join(
        list(distinct.values())[:10])
