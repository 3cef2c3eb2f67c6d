"""The staff screens over the real app and database (SQLite and PostgreSQL): login, the agent's desk from a typed
call to a dispatched order, the handler's queue and steps, the review and supervision lists, and the offline docs.
The browser walk-through is tests/api/test_browser_screens.py."""
from __future__ import annotations

import re
from contextlib import contextmanager

import pytest

from api.auth.staff import create_staff
from hotline.core.clock import utcnow
from hotline.core.db import transaction

CALL = ("来电人反映：岳麓区望月湖街道望月湖小区门口，晚上好多摊贩占道摆摊卖烧烤，油烟很大，人行道都过不去！！"
        "已经反映过两次了😡，请尽快处理。")
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def login(client, username: str, password: str | None = None, next_path: str = "/"):
    return client.post("/login", data={"username": username, "password": password or f"{username}-Passw0rd!",
                                       "next": next_path}, follow_redirects=False)


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def test_the_landing_page_says_what_this_is_and_links_the_public_pages(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "12345 政务服务便民热线" in page.text and "工作人员登录" in page.text
    for link in ('href="/chat"', 'href="/docs"', 'href="/redoc"', 'href="/login"'):
        assert link in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page.text), "no page may load anything from another host"


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_api_docs_load_only_files_this_server_serves(client, path):
    page = client.get(path)
    assert page.status_code == 200
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page.text) and "cdn.jsdelivr" not in page.text
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
    assert assets, "the docs page names its script"
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert client.get("/openapi.json").status_code == 200


def test_assets_are_a_fixed_list(client):
    assert client.get("/assets/desk.css").status_code == 200
    assert client.get("/assets/..%2Fsession.py").status_code == 404
    assert client.get("/assets/" + "a" * 300 + ".js").status_code == 404


def test_a_staff_page_without_a_session_goes_to_login_and_back(client, staff):
    first = client.get("/desk/review?x=1", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=/desk/review%3Fx%3D1"
    wrong = login(client, "dispatcher", "not-the-password")
    assert wrong.status_code == 401 and "用户名或密码错误" in wrong.text
    assert "hotline_staff" not in client.cookies
    done = login(client, "dispatcher", next_path="/desk/review?x=1")
    assert done.status_code == 303 and done.headers["location"] == "/desk/review?x=1"
    cookie = done.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/desk/review").status_code == 200


def test_login_never_redirects_to_another_site(client, staff):
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        assert login(client, "agent", next_path=target).headers["location"] == "/"


def test_a_role_sees_only_its_screens(client, staff):
    login(client, "official")
    assert client.get("/desk").status_code == 403
    assert client.get("/desk/supervision").status_code == 200
    landing = client.get("/").text
    assert "督办与回访" in landing and "坐席受理" not in landing


def test_a_post_without_the_session_token_is_refused(client, staff):
    login(client, "agent")
    refused = client.post("/desk/analyse", data={"text": CALL, "channel": "hotline"})
    assert refused.status_code == 403
    assert client.post("/logout", data={"csrf": "0" * 40}).status_code == 403


def test_the_agent_takes_a_call_from_record_to_dispatched_order(client, staff, app_and_keys):
    login(client, "agent")
    desk = client.get("/desk")
    assert desk.status_code == 200 and "来电受理" in desk.text
    token = csrf_of(desk.text)
    analysed = client.post("/desk/analyse", data={"csrf": token, "text": CALL, "caller_phone": "13974512345",
                                                  "channel": "hotline"})
    assert analysed.status_code == 200
    assert "分拨建议" in analysed.text and "来电历史" in analysed.text and "无历史来电" in analysed.text
    chosen = re.search(r'name="department_code" value="([^"]+)" checked', analysed.text)
    assert chosen, "the router's suggestion is preselected"
    department = chosen.group(1)
    filed = client.post("/desk/file", data={"csrf": token, "text": CALL, "caller_phone": "13974512345",
                                            "channel": "hotline", "department_code": department,
                                            "outcome": "dispatch"}, follow_redirects=False)
    assert filed.status_code == 303
    order_page = client.get(filed.headers["location"])
    assert order_page.status_code == 200 and "已派单" in order_page.text and "已登记" in order_page.text
    assert "13974512345" not in order_page.text and "139****2345" in order_page.text   # masked for staff lists

    # The same caller again: the desk shows the history.
    again = client.post("/desk/analyse", data={"csrf": token, "text": CALL, "caller_phone": "13974512345",
                                               "channel": "hotline"})
    assert "共来电 <strong>1</strong> 次" in again.text

    # The unit's handler signs and completes it from their own screen.
    _, _, factory = app_and_keys
    with transaction(factory) as session:
        create_staff(session, username="unit-handler", password="unit-handler-Passw0rd!", role="handler",
                     department_code=department)
    client.cookies.clear()
    login(client, "unit-handler")
    queue = client.get("/desk/department")
    order_no = filed.headers["location"].split("/")[-1].split("?")[0]
    assert queue.status_code == 200 and order_no in queue.text and "正常" in queue.text
    page = client.get(f"/desk/orders/{order_no}")
    token = csrf_of(page.text)
    assert "签收" in page.text
    signed = client.post(f"/desk/orders/{order_no}/act", data={"csrf": token, "action": "sign"},
                         follow_redirects=False)
    assert signed.status_code == 303
    incomplete = client.post(f"/desk/orders/{order_no}/act", data={"csrf": token, "action": "complete"})
    assert incomplete.status_code == 409 and "办结需要填写" in incomplete.text
    completed = client.post(f"/desk/orders/{order_no}/act",
                            data={"csrf": token, "action": "complete",
                                  "result": "已联合城管中队清理占道摊贩，设置劝导点，每晚巡查。"}, follow_redirects=False)
    assert completed.status_code == 303
    assert "已办结待审核" in client.get(f"/desk/orders/{order_no}").text

    # The centre sees it among the completions to review.
    client.cookies.clear()
    login(client, "dispatcher")
    review = client.get("/desk/review")
    assert order_no in review.text and "已联合城管中队清理占道摊贩" in review.text


def test_the_agent_diverts_a_police_matter_in_one_click(client, staff):
    login(client, "agent")
    token = csrf_of(client.get("/desk").text)
    text = "岳麓区望月湖街道有人在小区门口持刀打人，快派人来！"
    analysed = client.post("/desk/analyse", data={"csrf": token, "text": text, "channel": "hotline"})
    assert "一键转公安110" in analysed.text
    diverted = client.post("/desk/file", data={"csrf": token, "text": text, "channel": "hotline",
                                               "outcome": "divert:110"}, follow_redirects=False)
    assert diverted.status_code == 303
    assert "不予受理" in client.get(diverted.headers["location"]).text


@pytest.mark.parametrize("text, problem", [("", "请先输入来电记录"), ("   ", "请先输入来电记录"),
                                           ("投诉" * 2600, "诉求内容过长")])
def test_the_desk_explains_what_is_wrong_with_the_record(client, staff, text, problem):
    login(client, "agent")
    token = csrf_of(client.get("/desk").text)
    answer = client.post("/desk/analyse", data={"csrf": token, "text": text, "channel": "hotline"})
    assert answer.status_code == 422 and problem in answer.text


def test_another_units_order_is_not_shown_to_a_handler(client, staff):
    login(client, "agent")
    token = csrf_of(client.get("/desk").text)
    filed = client.post("/desk/file", data={"csrf": token, "text": CALL, "channel": "hotline", "outcome": "hold"},
                        follow_redirects=False)
    order_no = filed.headers["location"].split("/")[-1].split("?")[0]
    client.cookies.clear()
    login(client, "yuhua")
    assert client.get(f"/desk/orders/{order_no}").status_code == 404


def test_supervision_lists_alerts_and_follow_ups(client, staff):
    login(client, "official")
    page = client.get("/desk/supervision")
    assert page.status_code == 200 and "预警" in page.text and "待回访" in page.text


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")


def _dispatched_to_new_handler(client, app_and_keys) -> str:
    """An order dispatched by the agent's desk, and its unit's handler logged in; returns the order number."""
    login(client, "agent")
    token = csrf_of(client.get("/desk").text)
    analysed = client.post("/desk/analyse", data={"csrf": token, "text": CALL, "channel": "hotline"})
    department = re.search(r'name="department_code" value="([^"]+)" checked', analysed.text).group(1)
    filed = client.post("/desk/file", data={"csrf": token, "text": CALL, "channel": "hotline",
                                            "department_code": department, "outcome": "dispatch"},
                        follow_redirects=False)
    _, _, factory = app_and_keys
    with transaction(factory) as session:
        create_staff(session, username="photo-handler", password="photo-handler-Passw0rd!", role="handler",
                     department_code=department)
    client.cookies.clear()
    login(client, "photo-handler")
    return filed.headers["location"].split("/")[-1].split("?")[0]


def test_a_handler_completes_with_a_photo_kept_outside_the_database(client, staff, app_and_keys):
    order_no = _dispatched_to_new_handler(client, app_and_keys)
    token = csrf_of(client.get(f"/desk/orders/{order_no}").text)
    client.post(f"/desk/orders/{order_no}/act", data={"csrf": token, "action": "sign"})
    disguised = client.post(f"/desk/orders/{order_no}/act",
                            data={"csrf": token, "action": "complete", "result": "已修复路灯"},
                            files=[("files", ("现场照片.jpg", b"MZ\x90\x00 not a picture", "image/jpeg"))])
    assert disguised.status_code == 409 and "不是 JPEG/PNG/WebP 图片或 PDF 文件" in disguised.text
    assert "已签收" in client.get(f"/desk/orders/{order_no}").text   # nothing was done
    too_big = client.post(f"/desk/orders/{order_no}/act",
                          data={"csrf": token, "action": "complete", "result": "已修复路灯"},
                          files=[("files", ("大图.png", PNG + b"\x00" * (8 * 1024 * 1024), "image/png"))])
    assert too_big.status_code == 409 and "超过 8 MB" in too_big.text
    done = client.post(f"/desk/orders/{order_no}/act",
                       data={"csrf": token, "action": "complete", "result": "已清理占道摊贩，附整改后照片。"},
                       files=[("files", ("../../整改后 照片.png", PNG, "application/octet-stream"))],
                       follow_redirects=False)
    assert done.status_code == 303
    page = client.get(f"/desk/orders/{order_no}").text
    link = re.search(rf'href="(/desk/orders/{order_no}/attachments/\d+)">([^<]+)</a>', page)
    assert link and link.group(2) == "整改后 照片.png"   # no path from the uploaded name
    photo = client.get(link.group(1))
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/png" and photo.content == PNG
    client.cookies.clear()
    login(client, "yuhua")   # another unit's handler
    assert client.get(link.group(1)).status_code == 404


def test_a_second_caller_about_the_same_event_is_merged_from_the_desk(client, staff):
    login(client, "agent")
    token = csrf_of(client.get("/desk").text)
    first = client.post("/desk/file", data={"csrf": token, "text": CALL, "channel": "hotline", "outcome": "hold"},
                        follow_redirects=False)
    first_no = first.headers["location"].split("/")[-1].split("?")[0]
    analysed = client.post("/desk/analyse", data={"csrf": token, "text": CALL, "channel": "wechat"})
    assert "疑似同一事件的在办工单" in analysed.text and first_no in analysed.text
    assert f'value="merge:{first_no}"' in analysed.text
    merged = client.post("/desk/file", data={"csrf": token, "text": CALL, "channel": "wechat",
                                             "outcome": f"merge:{first_no}"}, follow_redirects=False)
    assert merged.status_code == 303
    second = client.get(merged.headers["location"]).text
    assert "已合并（同一事件）" in second and first_no in second
    assert merged.headers["location"].split("/")[-1].split("?")[0] in client.get(f"/desk/orders/{first_no}").text
    refused = client.post("/desk/file", data={"csrf": token, "text": CALL, "channel": "web",
                                              "outcome": "merge:CS00000000000000"})
    assert refused.status_code == 422 and "没有工单" in refused.text


def test_a_chat_handoff_appears_on_the_desk_and_is_called_back(client, staff):
    from orders.callbacks import request_callback

    with transaction(client.app.state.sessions) as session:
        request_callback(session, channel="web", contact="web:session-abc", phone="13812345678",
                         reason="投诉三次了都没人管，我要找人工！！", order_no=None, now=utcnow(),
                         conversation=[{"who": "citizen", "text": "转人工，我的电话13812345678"},
                                       {"who": "assistant", "text": "已为您转人工"}])
    login(client, "agent")
    desk = client.get("/desk")
    assert "待回电（转人工）" in desk.text and "138****5678" in desk.text and "13812345678" not in desk.text
    task_id = re.search(r'action="/desk/callbacks/(\d+)"', desk.text).group(1)
    token = csrf_of(desk.text)
    taken = client.post(f"/desk/callbacks/{task_id}", data={"csrf": token, "step": "take"})
    assert taken.status_code == 200 and "<code>13812345678</code>" in taken.text   # the agent who calls sees it
    client.cookies.clear()
    login(client, "dispatcher")
    other = client.post(f"/desk/callbacks/{task_id}", data={"csrf": csrf_of(client.get("/desk").text),
                                                            "step": "close", "note": "已回电"})
    assert other.status_code == 409 and "认领" in other.text
    client.cookies.clear()
    login(client, "agent")
    token = csrf_of(client.get("/desk").text)   # a new login is a new session: its own form token
    closed = client.post(f"/desk/callbacks/{task_id}", data={"csrf": token, "step": "close",
                                                             "note": "已回电说明办理进度"})
    assert closed.status_code == 200 and "回电已办结" in closed.text and "暂无待回电" in closed.text


def test_an_extension_request_waits_for_the_centre_on_the_review_screen(client, staff, app_and_keys):
    order_no = _dispatched_to_new_handler(client, app_and_keys)
    token = csrf_of(client.get(f"/desk/orders/{order_no}").text)
    client.post(f"/desk/orders/{order_no}/act", data={"csrf": token, "action": "sign"})
    asked = client.post(f"/desk/orders/{order_no}/act", data={"csrf": token, "action": "extend_request", "days": "3",
                                                              "reason": "需协调产权单位，现场勘查后整改"},
                        follow_redirects=False)
    assert asked.status_code == 303
    client.cookies.clear()
    login(client, "dispatcher")
    review = client.get("/desk/review").text
    assert order_no in review and "申请延期 3 个工作日：需协调产权单位" in review
    page = client.get(f"/desk/orders/{order_no}").text
    assert "批准延期" in page and "驳回延期" in page   # the centre decides, the unit does not grant itself


@contextmanager
def vector_writes():
    """The statements that write `order_embeddings` while the block runs (any engine of this process)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    writes: list[str] = []

    def record(conn, cursor, statement, *args):
        if not statement.lstrip().upper().startswith("SELECT") and "order_embeddings" in statement:
            writes.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield writes
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def _file_without_vector(factory, text: str, channel: str = "hotline") -> str:
    """An order stored without a vector (filed while no router was loaded); its number."""
    from orders.intake import file_complaint
    from orders.service import Actor

    with transaction(factory) as session:
        order, _ = file_complaint(session, text=text, channel=channel, actor=Actor("agent", "agent"), routing=None,
                                  routing_model=None, auto_dispatch=False)
        return order.order_no


def test_the_desks_analysis_only_reads_it_never_embeds_and_writes_stored_orders(client, staff, app_and_keys):
    """The analysis is a preview before filing: an order stored without a vector is left for GET
    /api/v1/orders/{no}/similar to embed and keep (the analysis once embedded such orders in a session it never
    committed)."""
    from sqlalchemy import func, select

    from orders.models import OrderEmbedding

    _, _, factory = app_and_keys
    _file_without_vector(factory, CALL)
    login(client, "agent")
    token = csrf_of(client.get("/desk").text)
    with vector_writes() as writes:
        analysed = client.post("/desk/analyse", data={"csrf": token, "text": CALL, "channel": "hotline"})
    assert analysed.status_code == 200 and "分拨建议" in analysed.text
    assert not writes, writes
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(OrderEmbedding)) == 0


def test_the_order_page_reads_only_even_for_an_order_stored_without_a_vector(client, staff, app_and_keys):
    """The page's session is never committed: its same-event search embeds the order for the view alone and writes
    nothing (it once INSERTed vectors that the closing session threw away)."""
    _, _, factory = app_and_keys
    order_no = _file_without_vector(factory, CALL)
    _file_without_vector(factory, CALL + "又来了", channel="web")
    login(client, "dispatcher")
    with vector_writes() as writes:
        page = client.get(f"/desk/orders/{order_no}")
    assert page.status_code == 200 and order_no in page.text
    assert not writes, writes
