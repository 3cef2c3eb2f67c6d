"""Reports over HTTP and on the cockpit: officials generate, list and download 日报/周报/月报 (agents cannot), bad
input is a 422 naming the field, downloads carry their content type and the Chinese file name. SQLite and
PostgreSQL (the app fixtures)."""
from __future__ import annotations

import datetime as dt
import io
import re
from urllib.parse import quote

from openpyxl import load_workbook

from hotline.core.clock import CITY_TZ
from hotline.core.db import transaction
from orders.intake import file_complaint
from orders.service import Actor


def _bearer(client, name: str) -> dict:
    response = client.post("/api/v1/auth/token", json={"username": name, "password": f"{name}-Passw0rd!"})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _one_order(factory) -> None:
    with transaction(factory) as session:
        file_complaint(session, text="岳麓区望月湖街道晚上好多摊贩占道摆摊卖烧烤，来电人电话13812345678", channel="wechat",
                       actor=Actor("wechat", "system"), routing=None, routing_model=None, auto_dispatch=False)


def test_officials_generate_list_and_download(client, staff, app_and_keys):
    _, _, factory = app_and_keys
    _one_order(factory)
    official = _bearer(client, "official")
    today = dt.datetime.now(CITY_TZ).date()
    made = client.post("/api/v1/reports", json={"period": "week", "date": today.isoformat()}, headers=official)
    assert made.status_code == 200, made.text
    entry = made.json()
    monday = today - dt.timedelta(days=today.weekday())
    assert (entry["period"], entry["label"], entry["start"]) == ("week", "周报", monday.isoformat())
    assert entry["formats"] == ["html", "pdf", "xlsx"] and entry["created_by"] == "official"
    assert all(entry["sizes"][ext] > 0 for ext in entry["formats"])
    listed = client.get("/api/v1/reports", headers=official).json()["reports"]
    assert [r["id"] for r in listed] == [entry["id"]]
    pdf = client.get(entry["files"]["pdf"]["url"], headers=official)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    disposition = pdf.headers["content-disposition"]
    assert disposition.startswith("attachment;") and f"filename*=UTF-8''{quote(entry['files']['pdf']['name'])}" in \
        disposition and "周报" in entry["files"]["pdf"]["name"]
    excel = client.get(entry["files"]["xlsx"]["url"], headers=official)
    assert excel.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    summary = {row[0]: row[1] for row in load_workbook(io.BytesIO(excel.content))["汇总"].iter_rows(values_only=True)
               if row and row[0]}
    assert summary["工单数"] == 1
    html = client.get(entry["files"]["html"]["url"], headers=official)
    assert html.headers["content-type"].startswith("text/html") and "周报" in html.text
    assert "13812345678" not in html.text   # no phone number in a report
    # The same period again replaces the entry (one per period); fewer formats, fewer files.
    again = client.post("/api/v1/reports", json={"period": "week", "date": today.isoformat(), "formats": ["xlsx"]},
                        headers=official).json()
    assert again["id"] == entry["id"] and again["formats"] == ["xlsx"]
    assert client.get(entry["files"]["pdf"]["url"], headers=official).status_code == 404
    assert client.get("/api/v1/reports/999999.pdf", headers=official).status_code == 404
    assert client.get(f"/api/v1/reports/{entry['id']}.exe", headers=official).status_code in (404, 422)


def test_agents_cannot_and_bad_input_is_422(client, staff):
    agent = _bearer(client, "agent")
    assert client.post("/api/v1/reports", json={"period": "week"}, headers=agent).status_code == 403
    assert client.get("/api/v1/reports", headers=agent).status_code == 403
    assert client.get("/api/v1/reports").status_code == 401
    official = _bearer(client, "official")
    for body, field in (({"period": "year"}, "period"), ({"period": "week", "date": "2026-13-01"}, "date"),
                        ({"period": "week", "formats": ["doc"]}, "formats"), ({"period": "week", "formats": []}, "formats"),
                        ({"period": "week", "colour": "red"}, "colour"), ({}, "period"),
                        ({"period": "day", "date": "0001-01-01"}, "date"), ({"period": "week", "date": "9999-12-31"}, "date")):
        answer = client.post("/api/v1/reports", json=body, headers=official)
        assert answer.status_code == 422 and field in answer.text, (body, answer.text)


def test_the_cockpit_reports_page(client, staff):
    client.cookies.clear()
    client.post("/login", data={"username": "official", "password": "official-Passw0rd!"})
    page = client.get("/cockpit/reports")
    assert page.status_code == 200 and "还没有报告" in page.text
    assert 'href="/cockpit/reports"' in client.get("/cockpit").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    made = client.post("/cockpit/reports", data={"csrf": csrf, "period": "month", "date": "2026-11-15",
                                                 "formats": ["pdf", "xlsx"]}, follow_redirects=False)
    assert made.status_code == 303 and made.headers["location"].startswith("/cockpit/reports?made=")
    listed = client.get(made.headers["location"]).text
    assert "已生成：月报 2026年11月" in listed and 'data-format="pdf"' in listed and 'data-format="html"' not in listed
    # The download links work with the page's cookie (reads only).
    url = re.search(r'href="(/api/v1/reports/\d+\.pdf)"', listed).group(1)
    assert client.get(url).status_code == 200
    assert client.post("/cockpit/reports", data={"period": "week"}).status_code == 403          # no form token
    assert client.post("/cockpit/reports", data={"csrf": csrf, "period": "year"}).status_code == 422
    assert client.post("/cockpit/reports", data={"csrf": csrf, "period": "week", "date": "12/01"}).status_code == 422
    far = client.post("/cockpit/reports", data={"csrf": csrf, "period": "day", "date": "0001-01-01"})
    assert far.status_code == 422 and "1901" in far.text and "<form" in far.text
    client.cookies.clear()
    client.post("/login", data={"username": "agent", "password": "agent-Passw0rd!"})
    assert client.get("/cockpit/reports").status_code == 403


def test_the_background_worker_makes_scheduled_reports_once(app_and_keys):
    from api.app import _generate_due_reports
    from orders.models import Report

    app, _, factory = app_and_keys
    settings = app.state.settings
    app.state.settings = settings.model_copy(update={"report_schedule": "day,week", "report_hour": 0})
    try:
        _generate_due_reports(app)
        _generate_due_reports(app)   # the archive says they exist: nothing more
    finally:
        app.state.settings = settings
    today = dt.datetime.now(CITY_TZ).date()
    with factory() as session:
        made = sorted((r.period, r.start, r.created_by) for r in session.query(Report))
    monday = today - dt.timedelta(days=today.weekday())
    assert made == [("day", today - dt.timedelta(days=1), "schedule"), ("week", monday - dt.timedelta(days=7), "schedule")]
