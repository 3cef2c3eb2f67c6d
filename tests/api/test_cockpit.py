"""The officials' cockpit (驾驶舱): who may open it, its filters, the district shapes, the orders behind a view, and
the indicator API answering the page's cookie for reads only. The charts themselves are drawn in the browser test
(tests/api/test_browser_screens.py), which also checks that the numbers on the page are the API's."""
from __future__ import annotations

import datetime as dt
import json
import re

from api.screens.cockpit import period_range
from hotline.core.clock import CITY_TZ, year_before
from hotline.core.db import transaction
from orders.intake import file_complaint
from orders.service import Actor


def login(client, username: str) -> None:
    client.cookies.clear()
    client.post("/login", data={"username": username, "password": f"{username}-Passw0rd!"})


def test_periods_are_calendar_periods_of_the_city():
    day = dt.date(2026, 12, 6)   # a Sunday
    assert period_range("day", day) == (day, dt.date(2026, 12, 7))
    assert period_range("week", day) == (dt.date(2026, 11, 30), dt.date(2026, 12, 7))
    assert period_range("month", day) == (dt.date(2026, 12, 1), dt.date(2027, 1, 1))
    assert period_range("quarter", day) == (dt.date(2026, 10, 1), dt.date(2027, 1, 1))
    assert period_range("year", day) == (dt.date(2026, 1, 1), dt.date(2027, 1, 1))
    assert year_before(dt.date(2028, 2, 29)) == dt.date(2027, 2, 28)


def test_officials_open_the_cockpit_and_agents_do_not(client, staff):
    login(client, "official")
    page = client.get("/cockpit?period=week&district=430104&channel=wechat")
    assert page.status_code == 200 and "驾驶舱" in page.text
    setup = json.loads(re.search(r'data-setup="([^"]+)"', page.text).group(1).replace("&#34;", '"')
                       .replace("&quot;", '"').replace("&amp;", "&"))
    today = dt.datetime.now(CITY_TZ).date()
    assert setup["start"] == (today - dt.timedelta(days=today.weekday())).isoformat()
    assert setup["filters"] == {"district": "430104", "channel": "wechat"}
    assert "/assets/echarts.min.js" in page.text and "https://" not in page.text
    assert client.get("/cockpit?district=<script>").status_code == 200   # an unknown filter is dropped, not echoed
    assert client.get("/cockpit/districts.geojson").json()["type"] == "FeatureCollection"
    login(client, "agent")
    assert client.get("/cockpit").status_code == 403


def test_the_page_cookie_reads_the_indicator_api_but_cannot_write(client, staff):
    login(client, "official")
    today = dt.datetime.now(CITY_TZ).date()
    read = client.get("/api/v1/indicators/order_count",
                      params={"start": today.isoformat(), "end": (today + dt.timedelta(days=1)).isoformat()})
    assert read.status_code == 200 and read.json()["name"] == "工单数"
    login(client, "agent")
    write = client.post("/api/v1/orders", json={"text": "岳麓区望月湖街道路灯不亮"})
    assert write.status_code == 401   # a cookie alone never authorises a write through the API


def test_the_orders_behind_a_view(client, staff, app_and_keys):
    _, _, factory = app_and_keys
    with transaction(factory) as session:
        filed = file_complaint(session, text="岳麓区望月湖街道晚上好多摊贩占道摆摊卖烧烤，人行道都过不去", channel="wechat",
                               actor=Actor("wechat", "system"), routing=None, routing_model=None, auto_dispatch=False)
        order = filed[0] if isinstance(filed, tuple) else filed
        order.street_id = "430104003"            # as the geocoder would place it (a street of 岳麓区)
    login(client, "official")
    today = dt.datetime.now(CITY_TZ).date()
    window = {"start": today.isoformat(), "end": (today + dt.timedelta(days=1)).isoformat()}
    listed = client.get("/cockpit/orders", params=window | {"channel": "wechat"})
    assert listed.status_code == 200 and "摊贩占道" in listed.text
    assert "摊贩占道" not in client.get("/cockpit/orders", params=window | {"channel": "hotline"}).text
    assert "摊贩占道" in client.get("/cockpit/orders", params=window | {"street": "430104003"}).text   # street drill
    assert "摊贩占道" not in client.get("/cockpit/orders", params=window | {"street": "430104001"}).text
    assert client.get("/cockpit/orders", params={"start": window["end"], "end": window["start"]}).status_code == 422
