"""The web chat page in a real browser: Debian's headless Chromium driven by Selenium, the app served by uvicorn on
a free loopback port. A typed message gets the assistant's reply; quick replies, an SVG bar chart, escaping, the
"assistant unavailable" notice and the staff login work as a person would use them.

The assistant is the real Rasa when its venv and a trained model exist (assistant.manage.start_rasa), otherwise
FakeRasa (tests/support.py) on loopback. HOTLINE_REQUIRE_BROWSER=1 / HOTLINE_REQUIRE_RASA=1 turn a missing
Chromium / Rasa into a failure instead of a skip. Chromium: `scripts/install_browser.sh`.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import uvicorn
import yaml
from support import REPO_ROOT, FakeRasa, closed_port_url, free_port, start_chromium

from api.app import create_app
from api.auth.staff import create_staff
from api.channels.assistant_client import UNAVAILABLE_MESSAGE
from assistant.manage import start_rasa, stop_process, wait_until_ready, why_rasa_cannot_run
from hotline.core.config import get_settings
from hotline.core.db import transaction

WAIT_S = 20


# -- the browser -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"), window="420,860",   # a phone-sized window
                            page_load_timeout_s=WAIT_S)
    yield driver
    driver.quit()


# -- the app on loopback ------------------------------------------------------------------------------------------
@pytest.fixture
def serve(router):
    """serve(rasa_url) → the base URL of the app (tiny-city router, its own SQLite) running under uvicorn."""
    running = []

    def start(rasa_url: str, port: int | None = None) -> str:
        port = port or free_port()
        settings = router.settings.model_copy(update={"rasa_url": rasa_url, "service_url": f"http://127.0.0.1:{port}",
                                                      "assistant_timeout_s": 20.0})
        router.settings = settings
        app = create_app(settings, router=router)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the app did not start"
            time.sleep(0.05)
        start.app = app
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)


# -- the real Rasa, when it has been installed and trained ----------------------------------------------------------
def _start_real_rasa(service_url: str, log_file: Path):
    """Rasa on a free port, its actions pointed at our app, loaded and answering; returns (url, stop)."""
    port = free_port()
    process = start_rasa(get_settings(), port=port, service_url=service_url, log_file=log_file)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, timeout=240, process=process)   # a cold start is 60–70 s on 2 cores
    except (TimeoutError, RuntimeError):
        stop_process(process)
        raise
    return url, lambda: stop_process(process)


def _greeting_texts() -> set[str]:
    """What the domain lets utter_greet say (a real reply to 你好 must be one of them), whitespace collapsed."""
    domain = yaml.safe_load((REPO_ROOT / "assistant" / "domain.yml").read_text(encoding="utf-8")) or {}
    variants = (domain.get("responses") or {}).get("utter_greet") or []
    return {_collapsed(variant["text"]) for variant in variants if "text" in variant}


def _collapsed(text: str) -> str:
    return " ".join(text.split())


# -- driving the page ---------------------------------------------------------------------------------------------
def _wait(browser, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S).until(condition, message)


def _bot_texts(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return [node.text for node in browser.find_elements(By.CSS_SELECTOR, "#messages .msg.bot:not(.intro):not(.chart)")]


def _notices(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return [node.text for node in browser.find_elements(By.CSS_SELECTOR, "#messages .msg.notice")]


def _type_and_send(browser, text: str, *, press_enter: bool = True) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = browser.find_element(By.ID, "input")
    box.send_keys(text)
    if press_enter:
        box.send_keys(Keys.ENTER)
    else:
        browser.find_element(By.ID, "send").click()


def _open(browser, base_url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base_url}/chat")
    _wait(browser, lambda b: b.find_element(By.ID, "input").is_displayed(), "the chat page did not load")
    browser.get_log("browser")   # start each test with an empty console


def _console_errors(browser) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


# -- the tests ------------------------------------------------------------------------------------------------------
def test_a_typed_message_gets_the_assistants_reply(browser, serve, tmp_path):
    from selenium.webdriver.common.by import By

    why_not_real = why_rasa_cannot_run(get_settings())
    if why_not_real and os.environ.get("HOTLINE_REQUIRE_RASA") == "1":
        pytest.fail(f"HOTLINE_REQUIRE_RASA=1 but {why_not_real}")
    port = free_port()
    if why_not_real is None:
        rasa_url, stop_rasa = _start_real_rasa(f"http://127.0.0.1:{port}", tmp_path / "rasa.log")
    else:
        fake = FakeRasa().__enter__()
        rasa_url, stop_rasa = fake.url, lambda: fake.__exit__(None, None, None)
    try:
        _open(browser, serve(rasa_url, port))
        _type_and_send(browser, "你好")
        _wait(browser, lambda b: _bot_texts(b) or _notices(b), "no answer appeared")
        assert _notices(browser) == [], _notices(browser)
        [reply] = _bot_texts(browser)[:1]
        assert [n.text for n in browser.find_elements(By.CSS_SELECTOR, "#messages .msg.user")] == ["你好"]
        assert not browser.find_element(By.ID, "typing").is_displayed()
        if why_not_real is None:   # the real assistant: one of its greetings
            assert _collapsed(reply) in _greeting_texts(), reply
        else:
            assert reply == "收到您的消息：你好"
            assert fake.turns[0]["metadata"]["channel"] == "web" and fake.turns[0]["sender"].startswith("web:")
        assert browser.find_element(By.ID, "input").get_attribute("value") == ""
        assert _console_errors(browser) == []
    finally:
        stop_rasa()


def test_quick_replies_and_an_svg_bar_chart(browser, serve):
    from selenium.webdriver.common.by import By

    with FakeRasa() as rasa:
        _open(browser, serve(rasa.url))
        _type_and_send(browser, "本月各区诉求量排名，给我选择", press_enter=False)
        _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#messages svg.bar-chart"), "no chart was drawn")
        chart = browser.find_element(By.CSS_SELECTOR, "#messages svg.bar-chart")
        bars = chart.find_elements(By.CSS_SELECTOR, "rect.bar")
        widths = [float(bar.get_attribute("width")) for bar in bars]
        assert len(bars) == 3 and widths[0] > widths[1] > widths[2] > 0   # 128 > 96.5 > 40
        labels = [node.text for node in chart.find_elements(By.CSS_SELECTOR, "text.label")]
        values = [node.text for node in chart.find_elements(By.CSS_SELECTOR, "text.value")]
        assert labels == ["岳麓区", "雨花区", "开福区"] and values == ["128件", "96.5件", "40件"]
        assert "本月诉求量（按区）" in chart.find_element(By.CSS_SELECTOR, "text.chart-title").text
        assert chart.size["width"] > 200   # drawn at a readable size in a phone-sized window

        buttons = browser.find_elements(By.CSS_SELECTOR, "#messages .quick-replies button")
        assert [b.text for b in buttons] == ["查询工单", "我要投诉"]
        buttons[1].click()
        _wait(browser, lambda b: len(rasa.turns) == 2 and len(_bot_texts(b)) == 3, "the quick reply was not sent")
        assert rasa.turns[1]["message"] == "/submit_complaint"        # the payload goes to the assistant …
        users = [n.text for n in browser.find_elements(By.CSS_SELECTOR, "#messages .msg.user")]
        assert users[-1] == "我要投诉"                                  # … the person sees the title
        assert all(not b.is_enabled() for b in browser.find_elements(By.CSS_SELECTOR, ".quick-replies button"))
        assert _console_errors(browser) == []   # nothing blocked by the Content-Security-Policy, no script error


def test_markup_in_messages_is_shown_as_text(browser, serve):
    from selenium.webdriver.common.by import By

    with FakeRasa() as rasa:
        _open(browser, serve(rasa.url))
        attack = '<img src=x onerror="document.title=\'pwned\'"><b>粗体</b>'
        _type_and_send(browser, attack)
        _wait(browser, lambda b: _bot_texts(b), "no answer appeared")
        assert _bot_texts(browser) == [f"收到您的消息：{attack}"]
        assert browser.find_elements(By.CSS_SELECTOR, "#messages img, #messages b") == []
        assert browser.title == "12345 智能助手"


def test_an_unavailable_assistant_shows_the_hotline_number(browser, serve):
    _open(browser, serve(closed_port_url()))
    _type_and_send(browser, "楼下烧烤店油烟太大")
    _wait(browser, lambda b: _notices(b), "no notice appeared")
    assert _notices(browser) == [UNAVAILABLE_MESSAGE] and _bot_texts(browser) == []


def test_an_official_logs_in_and_the_token_goes_with_each_question(browser, serve):
    from selenium.webdriver.common.by import By

    with FakeRasa() as rasa:
        base_url = serve(rasa.url)
        with transaction(serve.app.state.sessions) as session:
            create_staff(session, username="li.official", password="长沙市12345官员", role="official")
        _open(browser, base_url)
        browser.find_element(By.ID, "staff-toggle").click()
        browser.find_element(By.ID, "login-username").send_keys("li.official")
        browser.find_element(By.ID, "login-password").send_keys("错误的密码-wrong")
        browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        _wait(browser, lambda b: b.find_element(By.ID, "login-error").text, "no login error shown")
        assert browser.find_element(By.ID, "login-error").text == "用户名或密码错误"

        password = browser.find_element(By.ID, "login-password")
        password.clear()
        password.send_keys("长沙市12345官员")
        browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        _wait(browser, lambda b: b.find_element(By.ID, "staff-status").is_displayed(), "login did not finish")
        assert "li.official" in browser.find_element(By.ID, "staff-name").text
        _type_and_send(browser, "本月岳麓区噪音投诉多少件")
        _wait(browser, lambda b: rasa.turns and _bot_texts(b), "no answer appeared")
        metadata = rasa.turns[-1]["metadata"]
        assert metadata["role"] == "official" and metadata["auth_token"].count(".") == 2

        browser.find_element(By.ID, "logout").click()
        _type_and_send(browser, "按时办结率最低的三个部门")
        _wait(browser, lambda b: len(rasa.turns) == 2, "the second question was not sent")
        assert rasa.turns[-1]["metadata"]["role"] == "citizen" and "auth_token" not in rasa.turns[-1]["metadata"]


def test_a_citizen_reads_the_result_and_asks_for_a_person_who_is_listed_on_the_desk(browser, serve, tmp_path):
    """With the real assistant: the status answer carries the 办理结果 once the centre approved it, and "转人工"
    files a call-back task that the agents' desk lists."""
    from selenium.webdriver.common.by import By
    from sqlalchemy import select

    from orders.intake import file_complaint
    from orders.models import CallbackRequest
    from orders.service import Actor, apply_action

    why_not_real = why_rasa_cannot_run(get_settings())
    if why_not_real:
        if os.environ.get("HOTLINE_REQUIRE_RASA") == "1":
            pytest.fail(f"HOTLINE_REQUIRE_RASA=1 but {why_not_real}")
        pytest.skip(f"needs the trained assistant: {why_not_real}")
    rasa_port = free_port()
    rasa_url = f"http://127.0.0.1:{rasa_port}"
    base_url = serve(rasa_url)
    # The trained assistant, with this app's state folder: its action calls carry this app's webhook token.
    rasa_settings = get_settings().model_copy(update={"state_dir": serve.app.state.settings.state_dir})
    process = start_rasa(rasa_settings, port=rasa_port, service_url=base_url, log_file=tmp_path / "rasa.log")
    try:
        wait_until_ready(rasa_url, timeout=240, process=process)
        sessions = serve.app.state.sessions
        centre = Actor("dispatch-system", "system")
        with transaction(sessions) as session:
            order, _ = file_complaint(session, text="岳麓区望月湖街道小区门口路灯不亮一周了，晚上出行很不安全",
                                      channel="hotline", actor=centre, caller_phone="13812345678", routing=None,
                                      routing_model=None, auto_dispatch=False)
            for action, data in (("accept", {}), ("dispatch", {"department_code": "430104-CHENGGUAN"}),
                                 ("sign", {}), ("complete", {"result": "已更换路灯灯具，恢复夜间照明"}), ("approve", {})):
                apply_action(session, order_id=order.id, action=action, actor=centre, **data)
            order_no = order.order_no
            create_staff(session, username="desk.agent", password="desk.agent-Passw0rd!", role="agent")
        _open(browser, base_url)
        _type_and_send(browser, f"查一下工单{order_no}，手机尾号5678")
        try:
            _wait(browser, lambda b: any(order_no in t for t in _bot_texts(b)) or _notices(b), "no status answer")
        except Exception:
            pytest.fail(f"no status answer: bot {_bot_texts(browser)}, notices {_notices(browser)}")
        assert any("办理结果" in t and "已更换路灯灯具" in t for t in _bot_texts(browser)), _bot_texts(browser)
        asked = len(_bot_texts(browser))
        _type_and_send(browser, "转人工")
        _wait(browser, lambda b: len(_bot_texts(b)) > asked and any("回电" in t for t in _bot_texts(b)[asked:]),
              "no call-back was promised")
        with sessions() as session:
            assert len(session.scalars(select(CallbackRequest).where(CallbackRequest.channel == "web")).all()) == 1

        browser.get(f"{base_url}/login?next=/desk")
        browser.find_element(By.CSS_SELECTOR, "input[name=username]").send_keys("desk.agent")
        password = browser.find_element(By.CSS_SELECTOR, "input[name=password]")
        password.send_keys("desk.agent-Passw0rd!")
        password.submit()
        _wait(browser, lambda b: b.current_url.endswith("/desk") and "待回电" in b.find_element(By.TAG_NAME, "body").text,
              "the desk did not list the call-back")
        assert "网站" in browser.find_element(By.CSS_SELECTOR, ".callback-list").text
    finally:
        stop_process(process)
