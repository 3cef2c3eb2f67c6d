"""Schema-driven fuzzing (schemathesis) of the public and machine endpoints, in process over ASGI, with the tiny-city
router, on SQLite and PostgreSQL. What must hold for any input the schema allows (and many it does not): never a
5xx, and documented JSON answers match their documented shape.

Bounded on purpose (a few examples per operation) so the file runs in about a minute; raise FUZZ_EXAMPLES locally
for a longer hunt, e.g. FUZZ_EXAMPLES=200.
"""
from __future__ import annotations

import os
import re

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from support import fresh_router

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
DERANDOMIZE = "FUZZ_EXAMPLES" not in os.environ   # the default run is reproducible; a longer hunt explores
# The router is fed fuzzed coordinates far outside China on purpose; prcoords says so each time.
pytestmark = pytest.mark.filterwarnings("ignore:Non-Chinese coords found:UserWarning")
PUBLIC_PATHS = r"^/(api/v1/public/|open311/|api/v1/route$|api/v1/orders|wechat/callback$|healthz$|readyz$)"


@pytest.fixture
def router(base_router, tmp_path):
    """The tiny-city router, with settings for fuzzing: a rate limit fuzzing cannot reach (else every public read
    soon answers 429 and nothing behind the limiter is exercised) and the WeChat channel switched on."""
    return fresh_router(base_router, cache_dir=tmp_path, public_rate_limit_per_minute=1_000_000,
                        wechat_token="fuzz-token")


def _with_credentials(case, keys: dict[str, str], *, real_service: bool) -> None:
    """Machine endpoints get a valid key (otherwise only the 401/403 path is fuzzed); the rest stays generated.
    A random service_code is almost never a real one, so half the Open311 intakes get one and reach the router."""
    if case.path.startswith("/api/v1/orders"):
        case.headers = {**(case.headers or {}), "X-API-Key": keys["dispatch"]}
    elif case.path == "/open311/v2/requests.json" and case.method.upper() == "POST" and isinstance(case.body, dict):
        case.body = {**case.body, "api_key": keys["dispatch"], **({"service_code": "0301"} if real_service else {})}


def documented_shape(ctx, response, case):
    """Response schema conformance where the schema is meant to describe the answer. The app's own endpoints raise
    HTTPException(422, "reason") — a string detail — where FastAPI documents its validation list; that is the
    app's chosen error style, not a defect, so those 422s are not held to the generated schema."""
    if response.status_code == 422 and not case.path.startswith("/open311/"):
        return None
    return response_schema_conformance(ctx, response, case)


def _operations(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex=PUBLIC_PATHS)
    return [result.ok() for result in schema.get_all_operations()]


def test_public_endpoints_never_answer_5xx(app_and_keys, subtests):
    """Each operation fuzzed with schema-valid and schema-violating input (its own subtest, so one failure does not
    hide another). schemathesis' pytest loader for fixtures does not run under pytest 9, hence plain Hypothesis."""
    app, keys, _ = app_and_keys
    operations = _operations(app)
    assert operations
    for operation in operations:
        with subtests.test(msg=operation.label):
            strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
            if _has_inputs(operation):   # an operation without parameters has nothing to get wrong
                strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))

            @given(case=st.one_of(strategies), real_service=st.booleans())
            @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
                      suppress_health_check=list(HealthCheck))
            def fuzz(case, real_service):
                _with_credentials(case, keys, real_service=real_service)
                case.call_and_validate(checks=[not_a_server_error, documented_shape])

            fuzz()


def _has_inputs(operation) -> bool:
    return bool(list(operation.iter_parameters()) or operation.body)


def test_the_fuzzed_surface_is_what_we_meant(app_and_keys):
    """If an endpoint is renamed, the filter above would silently fuzz nothing there: name what must be covered."""
    app, _, _ = app_and_keys
    paths = set(app.openapi()["paths"])
    for expected in ("/api/v1/public/orders/{order_no}", "/open311/v2/requests.json", "/open311/v2/services.json",
                     "/api/v1/route", "/api/v1/orders", "/wechat/callback", "/healthz", "/readyz"):
        assert expected in paths and re.match(PUBLIC_PATHS, expected)
    assert not re.match(PUBLIC_PATHS, "/api/v1/route/corrections")   # it teaches the router: not a public surface


ODD_INPUT_PROBES = [
    ("GET", "/api/v1/public/orders/CS%00?phone_last4=1234", None),
    ("GET", "/api/v1/public/orders/CS20260101000001?phone_last4=%D9%A1%D9%A2%D9%A3%D9%A4", None),   # Arabic-Indic
    ("GET", "/api/v1/orders?department=%00", None),
    ("GET", "/api/v1/orders?openid=%00", None),
    ("GET", "/api/v1/orders?q=%00&channel=%00&district=%00", None),
    ("GET", "/api/v1/orders/CS%00", None),
    ("POST", "/api/v1/orders/CS%00/actions", {"json": {"action": "accept"}}),
    ("POST", "/api/v1/orders", {"json": {"text": "路灯不亮\x00", "caller_openid": "\x00"}}),
    ("POST", "/api/v1/route", {"json": {"text": "\x00"}}),
    ("GET", "/open311/v2/requests/CS%00.json", None),
    ("GET", "/open311/v2/requests.json?service_request_id=%00", None),
    ("POST", "/open311/v2/requests.json", {"data": {"api_key": "hlk_" + "\x00" * 8, "service_code": "0101",
                                                    "description": "占道经营", "address_string": "望月湖"}}),
    ("POST", "/open311/v2/requests.json", {"data": {"service_code": "0101", "description": "占道经营\x00",
                                                    "address_string": "望月湖\x00", "media_url": "http://a.cn/\x00"}}),
    ("GET", "/wechat/callback?signature=%00&timestamp=%00&nonce=%00&echostr=%00", None),
    ("GET", "/wechat/callback?signature=%C2%80&timestamp=1&nonce=1&echostr=x", None),   # non-ASCII signature
]


@pytest.mark.parametrize("method, url, body", ODD_INPUT_PROBES)
def test_odd_characters_never_cause_a_5xx(app_and_keys, method, url, body):
    """What random fuzzing hits only by luck, probed every time: NUL (PostgreSQL text cannot hold it, SQLite can) and
    non-ASCII digits or signatures (hmac.compare_digest refuses non-ASCII strings)."""
    app, keys, _ = app_and_keys
    body = dict(body or {})
    if "data" in body and "api_key" not in body["data"]:
        body["data"] = {**body["data"], "api_key": keys["dispatch"]}
    with TestClient(app) as client:
        response = client.request(method, url, headers={"X-API-Key": keys["dispatch"]}, **body)
    assert response.status_code < 500, (response.status_code, response.text)
    if url.startswith("/open311/"):
        assert response.status_code in (400, 403, 404) and response.json()[0]["code"] == response.status_code


def test_an_empty_idempotency_key_is_no_key(app_and_keys):
    """Found by fuzzing: an empty Idempotency-Key was stored as "", so the next empty one hit the unique index (500)."""
    app, keys, _ = app_and_keys
    headers = {"X-API-Key": keys["dispatch"], "Idempotency-Key": ""}
    with TestClient(app) as client:
        first = client.post("/api/v1/orders", json={"text": "岳麓区望月湖街道路边摊占道经营"}, headers=headers)
        second = client.post("/api/v1/orders", json={"text": "雨花区高桥街道家里停水了"}, headers=headers)
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert first.json()["order_no"] != second.json()["order_no"]
