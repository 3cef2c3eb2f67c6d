"""The staff screens in a real browser (Debian's headless Chromium at 1280×800), against the real app on loopback
and the real database (SQLite and PostgreSQL): an agent logs in, types a call, reads the suggestion and dispatches
with the keyboard; the unit's handler signs and completes it; the centre sees the completion to review; an
official opens the supervision list; the API docs render offline.

Each screen is photographed: into HOTLINE_SCREENSHOT_DIR when set (docs/screens/ is made that way:
`HOTLINE_SCREENSHOT_DIR=docs/screens pytest tests/api/test_browser_screens.py -k sqlite`), else a temporary folder.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from support import start_chromium

from api.auth.staff import create_staff
from hotline.core.db import transaction

WAIT_S = 20
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")
CALL = ("来电人反映：岳麓区望月湖街道望月湖小区门口，晚上好多摊贩占道摆摊卖烧烤，油烟很大，人行道都过不去！！"
        "已经反映过两次了😡，请尽快处理。")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"), window="1280,800", page_load_timeout_s=WAIT_S)
    yield driver
    driver.quit()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("HOTLINE_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait(browser, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S).until(condition, message)


def _by(css: str):
    from selenium.webdriver.common.by import By

    return By.CSS_SELECTOR, css


def _login(browser, base: str, username: str, path: str) -> None:
    browser.delete_all_cookies()
    browser.get(base + path)
    _wait(browser, lambda b: "/login" in b.current_url, "a staff page sends a stranger to the login page")
    browser.find_element(*_by("input[name=username]")).send_keys(username)
    password = browser.find_element(*_by("input[name=password]"))
    password.send_keys(f"{username}-Passw0rd!")
    password.submit()
    _wait(browser, lambda b: b.current_url.endswith(path), f"after login {username} is back on {path}")


def _text(browser) -> str:
    from selenium.common.exceptions import WebDriverException

    try:
        return browser.find_element(*_by("body")).text
    except WebDriverException:   # the page is being replaced (a form's redirect; a stale or detached node): ask again
        return ""


def _no_console_errors(browser, *, blocked_ok: tuple[str, ...] = ()) -> None:
    """No error in the console (a blocked script or style, a missing asset), except requests our policy blocked
    on purpose (`blocked_ok`: the URL prefixes a third-party script tries and must not reach)."""
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
              and not (entry.get("source") == "security" and any(url in entry["message"] for url in blocked_ok))]
    assert not errors, errors


def test_each_role_does_its_main_task_in_the_browser(browser, server, shots, app_and_keys, tmp_path):
    from selenium.webdriver.common.keys import Keys

    base, _, factory = server
    with transaction(factory) as session:
        for name, role in (("agent", "agent"), ("dispatcher", "dispatcher"), ("official", "official")):
            create_staff(session, username=f"b-{name}", password=f"b-{name}-Passw0rd!", role=role)

    browser.get(base + "/")
    assert "12345 政务服务便民热线" in _text(browser)
    browser.save_screenshot(str(shots / "landing.png"))

    # A citizen asked the chat for a person: the assistant filed a call-back task (as its action does).
    app, _, _ = app_and_keys
    asked = httpx.post(f"{base}/api/v1/callbacks", headers={"X-API-Key": app.state.assistant_api_key},
                       json={"channel": "web", "contact": "web:browser-test", "phone": "13812345678",
                             "reason": "反映三次了没人管，要求人工",
                             "conversation": [{"who": "citizen", "text": "转人工 13812345678"}]})
    assert asked.status_code == 201, asked.text

    # The agent: the call-back task is on the desk; take it, the number to call appears.
    _login(browser, base, "b-agent", "/desk")
    _wait(browser, lambda b: "待回电（转人工）" in _text(b) and "138****5678" in _text(b), "the call-back task is listed")
    browser.find_element(*_by(".callback-list button[value=take]")).click()
    _wait(browser, lambda b: "13812345678" in _text(b), "the agent who calls back sees the number")

    # A first caller's order is held for review; the same event told again is proposed for merging.
    record = browser.find_element(*_by("#call-text"))
    record.send_keys(CALL)
    record.send_keys(Keys.CONTROL, Keys.ENTER)
    _wait(browser, lambda b: b.find_elements(*_by("#analysis")), "the analysis appears")
    browser.find_element(*_by("button[value=hold]")).click()
    _wait(browser, lambda b: "/desk/orders/" in b.current_url, "filing opens the order")
    first_no = browser.current_url.split("/desk/orders/")[1].split("?")[0]
    browser.get(base + "/desk")
    record = browser.find_element(*_by("#call-text"))
    record.send_keys(CALL)
    record.send_keys(Keys.CONTROL, Keys.ENTER)
    _wait(browser, lambda b: b.find_elements(*_by(f"button[value='merge:{first_no}']")), "the same event is proposed")
    browser.save_screenshot(str(shots / "desk_same_event.png"))
    browser.find_element(*_by(f"button[value='merge:{first_no}']")).click()
    _wait(browser, lambda b: "已合并（同一事件）" in _text(b), "the second caller is merged into the first order")

    # The agent: type the call, Ctrl+Enter analyses it, Alt+S files and dispatches to the suggestion.
    browser.get(base + "/desk")
    record = browser.find_element(*_by("#call-text"))
    record.send_keys("另一位来电：" + CALL.replace("烧烤", "小龙虾"))
    browser.find_element(*_by("input[name=caller_phone]")).send_keys("13974512345")
    record.send_keys(Keys.CONTROL, Keys.ENTER)
    _wait(browser, lambda b: b.find_elements(*_by("#analysis")), "the analysis appears")
    analysis = browser.find_element(*_by("#analysis")).text
    assert "分拨建议" in analysis and "派往单位" in analysis and "来电历史" in analysis
    department = browser.find_element(*_by("input[name=department_code]:checked")).get_attribute("value")
    browser.save_screenshot(str(shots / "desk.png"))
    _no_console_errors(browser)
    for co_handler in browser.find_elements(*_by("input[name=co_handlers]:checked")):
        co_handler.click()   # this walk-through has one unit (a lead order completes after its co-handlers)
    browser.find_element(*_by("button[value=dispatch]")).click()
    _wait(browser, lambda b: "/desk/orders/" in b.current_url, "filing opens the order")
    order_no = browser.current_url.split("/desk/orders/")[1].split("?")[0]
    _wait(browser, lambda b: "已派单" in _text(b), "dispatched")
    browser.save_screenshot(str(shots / "order.png"))

    # The unit's handler: the order is in their queue; sign, then complete with the result.
    with transaction(factory) as session:
        create_staff(session, username="b-handler", password="b-handler-Passw0rd!", role="handler",
                     department_code=department)
    _login(browser, base, "b-handler", "/desk/department")
    _wait(browser, lambda b: order_no in _text(b), "the dispatched order is in the unit's queue")
    browser.save_screenshot(str(shots / "department.png"))
    browser.find_element(*_by(f"a[href='/desk/orders/{order_no}']")).click()
    _wait(browser, lambda b: b.find_elements(*_by("details.action[open] button")), "the first step is open")
    browser.find_element(*_by("details.action[open] button")).click()   # 签收
    _wait(browser, lambda b: "已签收" in _text(b), "signed")
    complete = next(d for d in browser.find_elements(*_by("details.action"))
                    if d.find_element(*_by("summary")).text == "办结")
    complete.find_element(*_by("summary")).click()
    complete.find_element(*_by("textarea[name=result]")).send_keys("已联合城管中队清理占道摊贩，设置劝导点，每晚巡查。")
    photo = tmp_path / "整改后.png"
    photo.write_bytes(PNG)
    complete.find_element(*_by("input[type=file]")).send_keys(str(photo))
    complete.find_element(*_by("button")).click()
    _wait(browser, lambda b: "已办结待审核" in _text(b), "completed")
    _wait(browser, lambda b: "整改后.png" in _text(b), "the photo is listed with the order")

    # The centre: the completion waits for review, with the result text.
    _login(browser, base, "b-dispatcher", "/desk/review")
    _wait(browser, lambda b: order_no in _text(b) and "已联合城管中队清理占道摊贩" in _text(b), "the completion to review")
    browser.save_screenshot(str(shots / "review.png"))

    # An official: the supervision list (alerts and follow-ups).
    _login(browser, base, "b-official", "/desk/supervision")
    _wait(browser, lambda b: "预警" in _text(b) and "待回访" in _text(b), "the supervision lists")
    browser.save_screenshot(str(shots / "supervision.png"))
    _no_console_errors(browser)


def test_the_api_docs_render_without_the_internet(browser, server, shots):
    base, _, _ = server
    browser.get(base + "/docs")
    _wait(browser, lambda b: b.find_elements(*_by(".swagger-ui .opblock")), "Swagger UI draws the operations")
    browser.save_screenshot(str(shots / "docs.png"))
    browser.get(base + "/redoc")
    _wait(browser, lambda b: "hotline" in _text(b), "ReDoc draws the title")
    # ReDoc's sidebar asks for its maker's logo from their CDN; the page's policy blocks it (nothing leaves the
    # server's network) and the documentation is complete without it.
    _no_console_errors(browser, blocked_ok=("https://cdn.redoc.ly/",))


def test_an_official_reads_the_cockpit_and_drills_down_to_an_order(browser, server, shots):
    from selenium.webdriver.support.ui import Select

    base, keys, factory = server
    with transaction(factory) as session:
        create_staff(session, username="b-leader", password="b-leader-Passw0rd!", role="official")
    for text in (CALL, "岳麓区望月湖街道小区门口路灯不亮一周了", "雨花区高桥街道垃圾站好几天没人清运，臭气熏天"):
        filed = httpx.post(f"{base}/api/v1/orders", headers={"X-API-Key": keys["dispatch"]},
                           json={"text": text, "channel": "wechat"})
        assert filed.status_code == 201, filed.text
    _login(browser, base, "b-leader", "/cockpit")
    _wait(browser, lambda b: b.find_element(*_by("#cockpit")).get_attribute("data-loaded"), "the cockpit drew itself")
    shown = browser.find_element(*_by("[data-indicator=order_count]")).text
    cookie = {"hotline_staff": browser.get_cookie("hotline_staff")["value"]}
    setup = browser.execute_script("return JSON.parse(document.getElementById('cockpit').dataset.setup)")
    api = httpx.get(f"{base}/api/v1/indicators/order_count", cookies=cookie,
                    params={"start": setup["start"], "end": setup["end"]}).json()
    assert shown == f"{api['value']:,.0f}件", (shown, api["value"])   # the page shows the API's number
    for card in browser.find_elements(*_by("[data-indicator]")):   # every key figure is the API's, as printed
        name, text = card.get_attribute("data-indicator"), card.text
        value = httpx.get(f"{base}/api/v1/indicators/{name}", cookies=cookie,
                          params={"start": setup["start"], "end": setup["end"]}).json()["value"]
        if value is None:
            assert text == "—", (name, text)
        else:
            number = float(re.sub(r"[^0-9.]", "", text))
            expected = value * 100 if text.endswith("%") else value
            assert abs(number - expected) <= 0.05 + 1e-9, (name, text, value)
    table = httpx.get(f"{base}/api/v1/indicators/table", cookies=cookie,
                      params={"start": setup["start"], "end": setup["end"], "by": "department"}).json()["rows"]
    for row in browser.find_elements(*_by("#units tbody tr")):          # the unit table is the API's, cell by cell
        cells = [td.text for td in row.find_elements(*_by("td"))]
        api_row = table[row.get_attribute("data-unit")]
        assert cells[1] == str(api_row["order_count"]["value"]) and cells[2] == str(api_row["on_time_rate"]["numerator"])
    assert browser.find_elements(*_by("#map canvas")), "the district map is drawn"
    browser.save_screenshot(str(shots / "cockpit.png"))
    _no_console_errors(browser)

    # Change the period and the district; then the orders behind the view, and one of them.
    # 大类 → 子类 → 细类: a 子类 path in the filter draws the 细类 of it.
    sub = next(iter(httpx.get(f"{base}/api/v1/indicators/order_count", cookies=cookie, params={
        "start": setup["start"], "end": setup["end"], "by": "category2"}).json()["breakdown"]))
    browser.get(f"{base}/cockpit?" + urlencode({"category": sub}))
    _wait(browser, lambda b: b.find_element(*_by("#cockpit")).get_attribute("data-loaded"), "drawn for a 子类")
    assert _text(browser).count("细类") and "细类" in browser.find_element(*_by("#category-title")).text
    browser.get(f"{base}/cockpit")
    _wait(browser, lambda b: b.find_element(*_by("#cockpit")).get_attribute("data-loaded"), "drawn again")
    Select(browser.find_element(*_by("select[name=period]"))).select_by_value("week")
    Select(browser.find_element(*_by("select[name=district]"))).select_by_visible_text("岳麓区")
    Select(browser.find_element(*_by("select[name=channel]"))).select_by_value("wechat")
    browser.find_element(*_by(".filters button[type=submit]")).click()
    _wait(browser, lambda b: "period=week" in b.current_url and "district=430104" in b.current_url, "filters applied")
    _wait(browser, lambda b: b.find_element(*_by("#cockpit")).get_attribute("data-loaded"), "redrawn for 岳麓区")
    assert "岳麓区街道（乡镇）" in browser.find_element(*_by("#streets-title")).text   # city → district → street
    _wait(browser, lambda b: b.find_element(*_by("#cockpit")).get_attribute("data-loaded"), "redrawn")
    browser.find_element(*_by("#orders-link")).click()
    _wait(browser, lambda b: "/cockpit/orders" in b.current_url and "工单明细" in _text(b), "the orders behind it")
    browser.find_element(*_by("table.worklist a")).click()
    _wait(browser, lambda b: "/desk/orders/" in b.current_url and "办理过程" in _text(b), "one order's page")
