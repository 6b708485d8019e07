"""The control plane against its own OpenAPI document, with schemathesis: generated
requests to every operation get no 5xx and responses that match the document (status
codes, content types, headers, bodies).  Whether the server accepts every schema-valid
request and refuses every other is not checked: a program's text that the document
allows may still not read (400), and unknown query parameters are ignored."""

from __future__ import annotations

import cbor2
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from flowmetal.runtime import api as task_api
from flowmetal.store import open_store
from flowmetal.store.callbacks import PUBLIC_URL

from .served import Served


@schemathesis.serializer("application/cbor")
def cbor_body(ctx, value):
    """Store operations take CBOR: generated bodies are sent as such."""
    return cbor2.dumps(value)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    store = open_store(str(tmp_path_factory.mktemp("openapi") / "store"))
    s = Served(store).start()
    store.set_setting(PUBLIC_URL, s.url())
    token, _ = store.token_create("schemathesis", "write")
    s.token = token
    # A few tasks, so that listings have pages and ids exist.
    s.tasks = [task_api.start(store, "(receive)", f"t{i}.fm") for i in range(3)]
    yield s
    s.stop()


@pytest.fixture(scope="module")
def api_schema(served):
    schema = schemathesis.openapi.from_url(served.url("/openapi.json"))
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_the_server_matches_its_openapi_document(case, served):
    served.log.clear()
    wait = (case.query or {}).get("wait")
    if type(wait) in (int, float) and wait > 0.5:
        case.query["wait"] = 0.5  # a long poll of a task that never ends: keep it short
    body = case.body if isinstance(case.body, dict) else {}
    if type(body.get("waitSeconds")) in (int, float) and body["waitSeconds"] > 0.5:
        body["waitSeconds"] = 0.5  # a claim no task event answers: keep it short
    try:
        case.call_and_validate(base_url=served.url(),
                               headers={"Authorization": f"Bearer {served.token}"},
                               excluded_checks=[checks.positive_data_acceptance,
                                                checks.negative_data_rejection])
    except Exception:
        print("\n".join(served.log))  # the server's side of a failure
        raise
