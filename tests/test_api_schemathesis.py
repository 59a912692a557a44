"""Outside judges of /api/v1: the OpenAPI document is valid OpenAPI 3.1 (openapi-spec-validator),
and Schemathesis, driving the live app through its document with a token, finds no server error
and no answer the document doesn't describe, in every operation: requests it generates as valid
(on real and on unknown resources) and as invalid. About a minute; on SQLite in the normal suite,
on PostgreSQL among the slow tests."""

import itertools
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.api import tokens
from app.webhooks import endpoints
from conftest import ONE_DATABASE, close_app, conversation_of, create_tables, make_app
from helpers import CUSTOMER, deliver, user_id

EXAMPLES = 15  # per operation and kind of request: about a minute for the whole document


@pytest.fixture
def judged_app(database_url, user_row):
    """Data to work on (two conversations, an admin and an agent) and a token with every scope;
    replies are stored and queued, never sent (no job runner); the rate limit out of the way."""
    app = make_app(
        database_url,
        API_RATE_LIMIT=10**9,
        MESSENTE_API_USERNAME="api-user",
        MESSENTE_API_PASSWORD="api-password",
        MESSENTE_API_URL="http://127.0.0.1:9/v1",
        WEBHOOKS_ALLOWED_NETWORKS="127.0.0.0/8",
    )
    with app.app_context():
        create_tables()
        user_row()
        user_row("bob", role="agent")
        app.secret = tokens.create_token("schemathesis", list(tokens.SCOPES))[1]
        app.endpoint_id = endpoints.create_endpoint("http://127.0.0.1:9/hooks", ["message.created"])[0].id
    deliver(app, text="Tere! Is the shop open?")
    deliver(app, sender="+37255500001", text="STOP")
    yield app
    close_app(app)


@ONE_DATABASE
def test_the_document_is_valid_openapi_3_1_and_every_operation_documents_its_errors(judged_app):
    document = judged_app.test_client().get("/api/v1/openapi.json").json
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)
    operations = [
        (method, path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        if method in ("get", "post", "patch", "put", "delete")
    ]
    assert len(operations) == 28
    for method, path, operation in operations:
        assert {"401", "403", "422", "429"} <= set(operation["responses"]), (method, path)
        # The scope each needs (the token alone for /me, by the document's global requirement).
        security = operation.get("security", document["security"])
        assert security[0]["token"] in (["read"], ["send"], ["admin"]) or path == "/api/v1/me"
    problem = document["components"]["responses"]["TOO_MANY_REQUESTS"]
    assert list(problem["content"]) == ["application/problem+json"] and "Retry-After" in problem["headers"]


def judge(app, seconds_per_operation: list) -> list[str]:
    """Every operation, positive and negative requests, on unknown and on real resources; the
    failures Schemathesis reports, as text."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    # The token as Schemathesis's own setting: it knows the requests carry one (and checks that
    # without it they are refused).
    schema.config.update(headers={"Authorization": f"Bearer {app.secret}"})
    with app.app_context():
        real = {
            "conversation_id": conversation_of(CUSTOMER).id,
            "user_id": user_id(app, "bob"),
            "endpoint_id": app.endpoint_id,
        }
    keys = itertools.count()
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        fixed = {name: value for name, value in real.items() if "{" + name + "}" in operation.path}
        strategies = [operation.as_strategy(), operation.as_strategy(GenerationMode.NEGATIVE)]
        # Whether a webhook URL may be subscribed depends on where its name resolves at that
        # moment, which no document can say: a well-formed URL refused is a 422, as the API promises.
        excluded = [positive_data_acceptance] if operation.path.startswith("/api/v1/webhooks") else []
        if fixed:
            strategies.append(operation.as_strategy(path_parameters=fixed))
        started = time.monotonic()
        for strategy in strategies:

            @given(case=strategy)
            @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def run(case):
                if case.headers and "Idempotency-Key" in case.headers:
                    # A key is for one request: Hypothesis would send its favourite keys again
                    # with other bodies, which is (rightly) a 422.
                    case.headers["Idempotency-Key"] = f"{next(keys)}-{case.headers['Idempotency-Key'][:200]}"
                # The token named again here: Schemathesis then counts it as given (not generated)
                # whatever headers the case has, and checks that without it the request is refused.
                case.call_and_validate(headers={"Authorization": f"Bearer {app.secret}"}, excluded_checks=excluded)  # noqa: B023 (run now, in this loop)

            try:
                run()
            except Unsatisfiable:
                pass  # nothing to make invalid: no parameters, no body (GET /api/v1/me)
            except Exception as failure:  # collected: every operation is judged
                failures.append(f"{operation.label}: {failure}")
        seconds_per_operation.append((operation.label, time.monotonic() - started))
    return failures


@ONE_DATABASE
def test_schemathesis_finds_no_fault_in_any_operation_on_sqlite(judged_app):
    timings: list = []
    failures = judge(judged_app, timings)
    assert len(timings) == 28
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_schemathesis_finds_no_fault_in_any_operation_on_postgresql(judged_app):
    timings: list = []
    failures = judge(judged_app, timings)
    assert len(timings) == 28
    assert not failures, "\n\n".join(failures)
