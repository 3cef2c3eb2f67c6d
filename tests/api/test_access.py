"""Admins manage staff accounts and API keys over HTTP (GET/POST /api/v1/staff, /api/v1/keys) and on the admin
screen; nobody else may. On SQLite and PostgreSQL."""
from __future__ import annotations

import re

from api.auth.staff import create_staff
from hotline.core.db import transaction

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def _admin_token(client, factory) -> dict:
    with transaction(factory) as session:
        create_staff(session, username="root-admin", password="root-admin-Passw0rd!", role="admin")
    token = client.post("/api/v1/auth/token", json={"username": "root-admin", "password": "root-admin-Passw0rd!"})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def test_an_admin_creates_re_roles_and_disables_an_account(client, app_and_keys, staff):
    _, _, factory = app_and_keys
    admin = _admin_token(client, factory)
    created = client.post("/api/v1/staff", headers=admin, json={"username": "new.agent", "password": "张三的密码Passw0rd",
                                                                "role": "agent"})
    assert created.status_code == 201 and created.json()["role"] == "agent" and "password" not in created.text
    assert client.post("/api/v1/staff", headers=admin, json={"username": "new.agent", "password": "x" * 12,
                                                             "role": "agent"}).status_code == 422
    assert client.post("/api/v1/staff", headers=admin, json={"username": "h1", "password": "x" * 12,
                                                             "role": "handler"}).status_code == 422   # no unit
    names = {row["username"]: row for row in client.get("/api/v1/staff", headers=admin).json()}
    assert names["new.agent"]["active"] and "password_hash" not in str(names)
    moved = client.put("/api/v1/staff/new.agent/role", headers=admin, json={"role": "dispatcher"})
    assert moved.status_code == 200 and moved.json()["role"] == "dispatcher"
    assert client.put("/api/v1/staff/nobody/role", headers=admin, json={"role": "agent"}).status_code == 404
    login = client.post("/api/v1/auth/token", json={"username": "new.agent", "password": "张三的密码Passw0rd"})
    their = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert client.post("/api/v1/staff/new.agent/disable", headers=admin).json()["active"] is False
    assert client.get("/api/v1/orders", headers=their).status_code == 401   # the token dies with the account
    assert client.post("/api/v1/staff/root-admin/disable", headers=admin).status_code == 409


def test_an_admin_issues_a_key_once_and_revokes_it(client, app_and_keys):
    _, _, factory = app_and_keys
    admin = _admin_token(client, factory)
    made = client.post("/api/v1/keys", headers=admin, json={"name": "district-system", "scopes": ["orders:read"]})
    assert made.status_code == 201
    key = made.json()["key"]
    assert client.get("/api/v1/orders", headers={"X-API-Key": key}).status_code == 200
    listed = client.get("/api/v1/keys", headers=admin).json()
    assert any(k["name"] == "district-system" for k in listed) and key not in str(listed)
    assert client.post("/api/v1/keys", headers=admin, json={"name": "bad", "scopes": ["everything"]}).status_code == 422
    assert client.delete("/api/v1/keys/district-system", headers=admin).status_code == 204
    assert client.get("/api/v1/orders", headers={"X-API-Key": key}).status_code == 401
    assert client.delete("/api/v1/keys/district-system", headers=admin).status_code == 404


def test_only_admins_manage_access(client, staff):
    token = client.post("/api/v1/auth/token", json={"username": "dispatcher", "password": "dispatcher-Passw0rd!"})
    dispatcher = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert client.get("/api/v1/staff", headers=dispatcher).status_code == 403
    assert client.post("/api/v1/keys", headers=dispatcher, json={"name": "x", "scopes": ["route"]}).status_code == 403
    assert client.get("/api/v1/keys", headers={"X-API-Key": client.keys["dispatch"]}).status_code == 403


def test_the_admin_screen_manages_accounts_keys_and_webhooks(client, app_and_keys, staff):
    _, _, factory = app_and_keys
    _admin_token(client, factory)
    client.post("/login", data={"username": "root-admin", "password": "root-admin-Passw0rd!", "next": "/desk/admin"})
    page = client.get("/desk/admin?q=摊贩")
    assert page.status_code == 200 and "权责清单" in page.text and "工作人员" in page.text
    csrf = CSRF.search(page.text).group(1)
    made = client.post("/desk/admin/staff", data={"csrf": csrf, "username": "desk.agent", "password": "Passw0rd-1234",
                                                  "role": "agent"})
    assert made.status_code == 200 and "已创建账号 desk.agent" in made.text
    weak = client.post("/desk/admin/staff", data={"csrf": csrf, "username": "weak", "password": "short",
                                                  "role": "agent"})
    assert weak.status_code == 422 and "at least 10 characters" in weak.text
    key = client.post("/desk/admin/keys", data={"csrf": csrf, "name": "grid-system", "scopes": ["orders:write"]})
    shown = re.search(r"<code>(hlk_[^<]+)</code>", key.text)
    assert key.status_code == 200 and shown, "the new key is shown once"
    assert shown.group(1) not in client.get("/desk/admin").text
    assert "已吊销 grid-system" in client.post("/desk/admin/keys/grid-system/revoke", data={"csrf": csrf}).text
    disabled = client.post("/desk/admin/staff/desk.agent", data={"csrf": csrf, "change": "disable"})
    assert "已停用 desk.agent" in disabled.text
    entry = re.search(r'href="/desk/admin/kb/(KB-[\d-]+)"', page.text).group(1)
    assert client.get(f"/desk/admin/kb/{entry}").status_code == 200
    refused = client.post(f"/desk/admin/kb/{entry}", data={"csrf": csrf, "time_limit_days": "三天", "note": "试"})
    assert refused.status_code == 422 and "办理时限须为整数" in refused.text
    client.cookies.clear()
    client.post("/login", data={"username": "agent", "password": "agent-Passw0rd!"})
    assert client.get("/desk/admin").status_code == 403
