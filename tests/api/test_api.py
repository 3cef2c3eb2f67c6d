"""The HTTP API over the tiny-city router (FakeEmbedder): contract, validation, corrections."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth.keys import create_api_key
from hotline.core.db import transaction
from routing.geocode import gcj02_to_wgs84

STALL = "晚上好多摊贩占道摆摊卖烧烤，人行道都过不去"
CONSTRUCTION = "岳麓区望月湖街道小区里工地晚上施工噪音很大"
YUHUA_CENTROID = (28.063301, 113.08366)  # GCJ-02


@pytest.fixture
def client(router):
    """A client that calls as the dispatch system (an API key with the `route` scope)."""
    app = create_app(router.settings, router=router)
    with TestClient(app) as test_client:
        with transaction(app.state.sessions) as session:
            key = create_api_key(session, name="dispatch-system", scopes=["route"])[1]
        test_client.headers["X-API-Key"] = key
        yield test_client


def test_route_needs_a_key_with_the_route_scope(client):
    body = {"text": "岳麓区望月湖街道" + STALL}
    assert client.post("/api/v1/route", json=body, headers={"X-API-Key": ""}).status_code == 401
    with transaction(client.app.state.sessions) as session:
        reader = create_api_key(session, name="reader", scopes=["orders:read"])[1]
    refused = client.post("/api/v1/route", json=body, headers={"X-API-Key": reader})
    assert refused.status_code == 403 and "route" in refused.json()["detail"]
    assert client.post("/api/v1/route/corrections", headers={"X-API-Key": reader},
                       json={"text": CONSTRUCTION, "department_code": "430104-CHENGGUAN"}).status_code == 403


def test_the_assistant_gets_its_own_key_at_start_up(client):
    key = client.app.state.assistant_api_key
    assert key and key.startswith("hlk_")
    routed = client.post("/api/v1/route", json={"text": "岳麓区望月湖街道" + STALL}, headers={"X-API-Key": key})
    assert routed.status_code == 200
    # a restart keeps the same key (state_dir) rather than minting a new one each time
    again = create_app(client.app.state.settings, router=client.app.state.router)
    with TestClient(again):
        assert again.state.assistant_api_key == key


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_route_returns_the_contract(client):
    response = client.post("/api/v1/route", json={"id": "GD-42", "text": f"岳麓区望月湖街道桃子湖路{STALL}"})
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "GD-42"
    assert body["category"] == ["城市管理", "市容秩序", "占道经营"]
    assert body["department"] == {"code": "430104-CHENGGUAN", "name": "岳麓区城市管理和综合执法局", "level": "district"}
    assert body["jurisdiction"] == {"district": "岳麓区", "street": "望月湖街道", "community": None}
    assert 0.0 <= body["confidence"] <= 1.0
    assert body["decision"] in {"auto", "suggest", "review"}
    assert body["kb_item"] == {"id": "KB-01-001", "name": "占道经营查处"}
    assert body["candidates"] and body["candidates"][0]["department"]["code"] == "430104-CHENGGUAN"
    assert isinstance(body["tags"], list)
    assert body["address"]["street"] == {"id": "430104001", "name": "望月湖街道"}


def test_route_uses_the_location_and_its_datum(client):
    lat, lng = gcj02_to_wgs84(*YUHUA_CENTROID)
    response = client.post("/api/v1/route", json={"text": "楼下" + STALL,
                                                  "location": {"lat": lat, "lng": lng, "datum": "wgs84"}})
    assert response.status_code == 200
    body = response.json()
    assert body["department"]["code"] == "430111-CHENGGUAN"
    assert body["address"]["coordinates"]["lat"] == pytest.approx(YUHUA_CENTROID[0], abs=1e-5)
    upper = client.post("/api/v1/route", json={"text": "楼下" + STALL,
                                               "location": {"lat": YUHUA_CENTROID[0], "lng": YUHUA_CENTROID[1],
                                                            "datum": "GCJ02"}})
    assert upper.status_code == 200 and upper.json()["department"]["code"] == "430111-CHENGGUAN"


@pytest.mark.parametrize("text", ["", "   ", "\n\u3000"])
def test_empty_text_is_422_with_a_reason(client, text):
    response = client.post("/api/v1/route", json={"text": text})
    assert response.status_code == 422
    assert response.json()["detail"] == "text is empty"


def test_too_long_text_is_422_naming_the_limit(client):
    response = client.post("/api/v1/route", json={"text": "噪音" * 25_000})
    assert response.status_code == 422
    assert "50000" in response.json()["detail"] and "20000" in response.json()["detail"]


def test_openapi_schema_has_no_router_parameter(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    operation = response.json()["paths"]["/api/v1/route"]["post"]
    # only the credentials headers: the injected router must not leak into the public contract
    assert sorted((p["name"], p["in"]) for p in operation.get("parameters", [])) == [
        ("authorization", "header"), ("x-api-key", "header")]


def test_bad_location_datum_is_422(client):
    response = client.post("/api/v1/route", json={"text": STALL, "location": {"lat": 28.1, "lng": 112.9, "datum": "mars"}})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert any(err["loc"][-1] == "datum" for err in detail)


def test_out_of_range_location_is_422(client):
    response = client.post("/api/v1/route", json={"text": STALL, "location": {"lat": 128.1, "lng": 112.9}})
    assert response.status_code == 422
    assert any(err["loc"][-1] == "lat" for err in response.json()["detail"])


def test_missing_text_is_422(client):
    response = client.post("/api/v1/route", json={"id": "x"})
    assert response.status_code == 422
    assert any(err["loc"][-1] == "text" for err in response.json()["detail"])


def test_correction_changes_the_next_routing(client, router):
    similar = CONSTRUCTION.replace("很大", "太大")
    before = client.post("/api/v1/route", json={"text": similar}).json()
    assert before["department"]["code"] == "430104-ZHUJIAN"
    response = client.post("/api/v1/route/corrections",
                           json={"text": CONSTRUCTION, "department_code": "430104-CHENGGUAN", "kb_item_id": "KB-03-002"})
    assert response.status_code == 201
    recorded = response.json()
    assert {k: recorded[k] for k in ("status", "corrections", "supersedes")} == {
        "status": "recorded", "corrections": 1, "supersedes": []}
    assert isinstance(recorded["id"], int) and recorded["expires_at"]
    after = client.post("/api/v1/route", json={"text": similar}).json()
    assert after["department"]["code"] == "430104-CHENGGUAN"
    assert after["kb_item"]["id"] == "KB-03-002"
    assert len(router.feedback) == 1


def test_correction_with_an_unknown_department_is_422(client, router):
    response = client.post("/api/v1/route/corrections", json={"text": CONSTRUCTION, "department_code": "XX-999"})
    assert response.status_code == 422
    assert "unknown department code 'XX-999'" in response.json()["detail"]
    response = client.post("/api/v1/route/corrections", json={"text": " ", "department_code": "430104-CHENGGUAN"})
    assert response.status_code == 422 and response.json()["detail"] == "text is empty"
    assert len(router.feedback) == 0


LONG_STALL = ("投诉岳麓区望月湖街道桃花苑小区东门外占道经营问题。每天晚上七点以后，小区东门外人行道上摆满了烧烤摊和"
              "水果摊，桌子凳子一直摆到非机动车道，居民进出小区要绕到马路上走，老人小孩很不安全，电话13812345678")


def test_corrections_are_listed_masked_and_removed_with_the_route_scope(client, router):
    recorded = client.post("/api/v1/route/corrections",
                           json={"text": LONG_STALL, "department_code": "430104001"}).json()
    listed = client.get("/api/v1/route/corrections")
    assert listed.status_code == 200
    [row] = listed.json()
    assert row["id"] == recorded["id"] and row["status"] == "active" and row["created_by"] == "dispatch-system"
    assert row["department_code"] == "430104001" and row["kind"] == "street_office"
    assert row["original_entry_id"] == "KB-01-001" and row["original_department_code"] == "430104-CHENGGUAN"
    assert "13812345678" not in row["text"] and "138****5678" in row["text"]
    assert row["expires_at"] > row["created_at"] and row["superseded_by"] is None
    followed = client.post("/api/v1/route", json={"text": LONG_STALL}).json()
    assert followed["department"]["code"] == "430104001" and "参考改派记录" in followed["explanation"]
    assert followed["decision"] != "auto"      # a correction alone never dispatches automatically

    # the same protection as recording one: a key without the route scope is refused, no key is 401
    with transaction(client.app.state.sessions) as session:
        reader = create_api_key(session, name="reader2", scopes=["orders:read"])[1]
    assert client.get("/api/v1/route/corrections", headers={"X-API-Key": reader}).status_code == 403
    assert client.delete(f"/api/v1/route/corrections/{row['id']}", headers={"X-API-Key": reader}).status_code == 403
    assert client.delete(f"/api/v1/route/corrections/{row['id']}", headers={"X-API-Key": ""}).status_code == 401

    assert client.delete(f"/api/v1/route/corrections/{row['id']}").status_code == 204
    # the running router forgot it at once
    assert len(router.feedback) == 0 and client.get("/api/v1/route/corrections").json() == []
    assert client.post("/api/v1/route", json={"text": LONG_STALL}).json()["department"]["code"] == "430104-CHENGGUAN"
    gone = client.delete(f"/api/v1/route/corrections/{row['id']}")
    assert gone.status_code == 404 and gone.json()["detail"] == f"no correction with id {row['id']}"


def test_router_not_ready_is_503(router):
    app = create_app(router.settings, router=None)
    client = TestClient(app)  # no lifespan: nothing builds the router
    response = client.post("/api/v1/route", json={"text": STALL})
    assert response.status_code == 503
    assert "loading" in response.json()["detail"]


def test_a_truncated_emoji_is_not_a_server_error(client):
    # A client that cuts a text at N UTF-16 units sends half an emoji: a lone surrogate escape in the JSON.
    body = '{"text": "\\u5cb3\\u9e93\\u533a\\u671b\\u6708\\u6e56\\u8857\\u9053\\u644a\\u8d29\\u5360\\u9053\\ud83d"}'
    response = client.post("/api/v1/route", content=body, headers={"content-type": "application/json"})
    # Issue 11 M1: every endpoint but the citizens' chat (which drops them, tests/api/test_chat.py) refuses lone
    # surrogates with a reason, so nothing unencodable reaches the database or a log.
    assert response.status_code == 422, response.text
    assert "surrogate" in response.text


def test_readyz_metrics_and_request_ids(client):
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["checks"]["database"] == "ok" and ready.json()["checks"]["router"] == "ok"
    routed = client.post("/api/v1/route", json={"text": STALL}, headers={"X-Request-ID": "req-abc-123"})
    assert routed.headers["X-Request-ID"] == "req-abc-123"
    assert len(client.get("/healthz").headers["X-Request-ID"]) == 32           # generated when none was sent
    metrics = client.get("/metrics").text
    decision = routed.json()["decision"]
    assert f'hotline_routing_decisions_total{{decision="{decision}"}} 1.0' in metrics
    assert 'hotline_http_requests_total{method="POST",route="/api/v1/route",status="200"} 1.0' in metrics


@pytest.mark.parametrize("sent", ["r" * 16_384, "r" * 65, "id with spaces", "13812345678 张三", "a\u00e9b", "x\"}{"])
def test_a_long_or_odd_client_request_id_is_replaced(client, caplog, sent):
    """L6: the client's X-Request-ID is logged and echoed only when short (<= 64) and of safe characters."""
    import logging

    with caplog.at_level(logging.INFO, logger="hotline.access"):
        response = client.get("/healthz", headers={"X-Request-ID": sent.encode("utf-8")})
    echoed = response.headers["X-Request-ID"]
    assert echoed != sent and len(echoed) == 32 and echoed.isalnum()
    logged = [r.fields["request_id"] for r in caplog.records if getattr(r, "fields", None)]
    assert logged and all(rid == echoed for rid in logged)
    kept = "0f8e2c1a-9b7d-4e3f-8a6b-1c2d3e4f5a6b"
    assert client.get("/healthz", headers={"X-Request-ID": kept}).headers["X-Request-ID"] == kept


def test_readyz_names_no_file_system_path(client, monkeypatch):
    """L7: /readyz is anonymous; it says which embedder runs, not where the server keeps its models."""
    note = ("USE multilingual: e5 unavailable because OSError: /srv/hotline/.cache/hotline/models/e5-small is not "
            "a folder; int8 from C:\\hotline\\models\\use")
    monkeypatch.setattr(client.app.state.router, "embedder_note", note)
    ready = client.get("/readyz", headers={"X-API-Key": ""})
    assert ready.status_code == 200
    text = ready.text
    assert "/srv" not in text and "hotline/models" not in text and "\\\\" not in text
    assert "e5-small" in ready.json()["checks"]["embeddings"]


def test_metrics_are_public_by_default_and_can_require_a_key(router):
    """L7: HOTLINE_METRICS_PUBLIC=false asks for an API key with `metrics:read` (or an admin's token)."""
    with TestClient(create_app(router.settings, router=router)) as public:
        assert public.get("/metrics").status_code == 200
    closed = router.settings.model_copy(update={"metrics_public": False})
    with TestClient(create_app(closed, router=router)) as test_client:
        assert test_client.get("/metrics").status_code == 401
        with transaction(test_client.app.state.sessions) as session:
            other = create_api_key(session, name="dispatch", scopes=["route"])[1]
            scraper = create_api_key(session, name="prometheus", scopes=["metrics:read"])[1]
        assert test_client.get("/metrics", headers={"X-API-Key": other}).status_code == 403
        scraped = test_client.get("/metrics", headers={"X-API-Key": scraper})
        assert scraped.status_code == 200 and "hotline_http_requests_total" in scraped.text


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc",
                                  "/api/v1/orders/NOPE", "/no-such-page"])
def test_api_and_docs_responses_carry_security_headers(client, path):
    """L7: nosniff, no referrer and no framing on every response, not only on /chat."""
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    if response.headers["content-type"].startswith("text/html"):
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_the_chat_page_keeps_its_own_content_security_policy(client):
    page = client.get("/chat")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"


def test_readyz_says_not_ready_while_the_router_loads(router):
    app = create_app(router.settings, router=None)
    response = TestClient(app).get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["router"] == "loading"


def test_json_logs_mask_phones_and_carry_fields(caplog):
    import json as json_module
    import logging

    from api.observability import JsonFormatter

    record = logging.LogRecord("hotline.test", logging.WARNING, __file__, 1, "来电 13812345678 投诉", None, None)
    record.fields = {"request_id": "r1"}
    line = json_module.loads(JsonFormatter().format(record))
    assert line["message"] == "来电 138****5678 投诉" and line["request_id"] == "r1" and line["level"] == "WARNING"


def test_a_forged_host_header_is_refused_and_never_reflected(router):
    """Review 2026-12-06, L8: `Host: evil.example` came back in the slash redirect's Location (/chat/ →
    http://evil.example/chat) and in Open311 discovery's `url`."""
    settings = router.settings.model_copy(update={"allowed_hosts": ["12345.changsha.gov.cn"]})
    with TestClient(create_app(settings, router=router)) as client:
        for path in ("/chat/", "/open311/v2/discovery.json", "/healthz", "/api/v1/orders"):
            forged = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
            assert forged.status_code == 400, (path, forged.status_code)
            assert "evil" not in forged.text and "evil" not in forged.headers.get("location", "")
        assert "HOTLINE_ALLOWED_HOSTS" in client.get("/healthz", headers={"Host": "evil.example"}).json()["detail"]
        assert client.get("/open311/v2/discovery.json", headers={"Host": "evil.example"}).json()[0]["code"] == 400
        for host in ("testserver", "127.0.0.1:8000", "localhost", "[::1]:8000", "12345.changsha.gov.cn",
                     "12345.CHANGSHA.gov.cn:443"):
            assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
        moved = client.get("/chat/", headers={"Host": "12345.changsha.gov.cn"}, follow_redirects=False)
        assert moved.status_code in (301, 307) and moved.headers["location"] == "http://12345.changsha.gov.cn/chat"
        discovered = client.get("/open311/v2/discovery.json", headers={"Host": "127.0.0.1:8000"}).json()
        assert discovered["endpoints"][0]["url"] == "http://127.0.0.1:8000/open311/v2"


def test_open311_discovery_publishes_the_configured_public_address(router):
    settings = router.settings.model_copy(update={"public_base_url": "https://12345.changsha.gov.cn/"})
    with TestClient(create_app(settings, router=router)) as client:
        discovered = client.get("/open311/v2/discovery.json", headers={"Host": "127.0.0.1:8000"})
        assert discovered.json()["endpoints"][0]["url"] == "https://12345.changsha.gov.cn/open311/v2"
        assert client.get("/healthz", headers={"Host": "12345.changsha.gov.cn"}).status_code == 200


@pytest.mark.parametrize("location, accepted", [
    ({"lat": 28.2, "lng": 112.93, "datum": "GCJ02"}, True),     # any letter case, on every endpoint
    ({"lat": 28.2, "lng": 112.93}, True),                       # WGS-84 by default
    ({"lat": 91, "lng": 112.93}, False),
    ({"lat": 28.2, "lng": -181}, False),
    ({"lat": 28.2, "lng": 112.93, "datum": "mars"}, False),
])
def test_a_location_follows_one_rule_for_routing_and_for_filing(client, location, accepted):
    """api/schemas.Location is the one shape of a point: routing and filing an order answer alike (they had two
    copies with different datum rules)."""
    with transaction(client.app.state.sessions) as session:
        writer = create_api_key(session, name="intake-system", scopes=["orders:write"])[1]
    routed = client.post("/api/v1/route", json={"text": "岳麓区望月湖街道" + STALL, "location": location})
    filed = client.post("/api/v1/orders", json={"text": "岳麓区望月湖街道" + STALL, "location": location},
                        headers={"X-API-Key": writer})
    if accepted:
        assert routed.status_code == 200 and filed.status_code == 201
    else:
        assert routed.status_code == 422 and filed.status_code == 422
        assert "location" in routed.text and "location" in filed.text
