"""The whole API against its own OpenAPI document (schemathesis): no 5xx and no conformance failure, without a
token and with the admin and the ingest token, over a real store holding one running experiment.

Bounded and reproducible: a fixed number of examples per operation and a derandomised (fixed-seed) run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from param_store import EmbeddedRedis, ParamStore
from serving import ServingConfig, create_app
from serving.http import EXTENSION_KEY
from serving.openapi import openapi_document
from tests.serving.conftest import TEST_POLL_INTERVAL_S, launch

ADMIN_TOKEN = "admin-token-for-schemathesis"
INGEST_TOKEN = "ingest-token-for-schemathesis"
#: Examples per operation: about 20 s for the whole API on a shared two-core machine.
MAX_EXAMPLES = 25
#: Small, so that generated batches stay cheap (the limit itself is tested elsewhere).
MAX_BATCH = 100
HEADERS = ({}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, {"Authorization": f"Bearer {INGEST_TOKEN}"})


def _config(**values) -> ServingConfig:
    return ServingConfig(admin_token=ADMIN_TOKEN, ingest_token=INGEST_TOKEN, max_batch=MAX_BATCH,
                         poll_interval_s=TEST_POLL_INTERVAL_S, **values)


#: The document the app serves (the test checks they are the same), loaded before collection to parametrize.
DOCUMENT = openapi_document(_config(redis_url="redis://document-only"))
#: Schema-valid input may still fail the server's semantic checks, documented as 422: a spec whose control lies
#: outside its bounds, a row naming an arm the version lacks. Everything else is schemathesis' defaults.
CONFIG = SchemathesisConfig.from_dict({"seed": 13, "checks": {"positive_data_acceptance": {
    "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422"]}}})
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


@pytest.fixture
def app(redis_server: EmbeddedRedis, namespace: str) -> Iterator[Flask]:
    store = ParamStore(redis_server.client(), namespace=namespace)
    launch(store, "feed")
    app = create_app(_config(redis_url=redis_server.url, namespace=namespace))
    assert app.test_client().get("/v1/openapi.json").json == DOCUMENT
    yield app
    app.extensions[EXTENSION_KEY].close()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck), database=None)
def test_the_api_conforms_to_its_openapi_document(case, app: Flask) -> None:
    for headers in HEADERS:
        case.call_and_validate(app=app, headers=headers)
