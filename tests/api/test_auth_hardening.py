"""Review 2026-12-06, findings M2/L15 (citizen lookups: who may relay on behalf of users, which proxies are believed),
M6/L13 (staff login throttling and lockout; no username oracle) and M7 (tokens follow the account's current state;
`hotline staff disable|set-role`)."""
from __future__ import annotations

import itertools

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.auth.keys import create_api_key
from hotline.core.db import make_engine, session_factory, transaction

LOOKUP = "/api/v1/public/orders/CS{}"
_numbers = itertools.count(1)


def _app(router, **overrides):
    settings = router.settings.model_copy(update={"auto_dispatch": False, **overrides})
    router.settings = settings
    app = create_app(settings, router=router)
    with TestClient(app):   # lifespan: migrates the embedded SQLite
        pass
    return app, session_factory(make_engine(settings.database_url))


@pytest.fixture
def app_and_factory(router):
    return _app(router)


def _keys(factory, **named_scopes) -> dict[str, str]:
    with transaction(factory) as session:
        return {name: create_api_key(session, name=name, scopes=scopes)[1] for name, scopes in named_scopes.items()}


def _ask(client, headers: dict) -> int:
    # A new order number each time: these tests are about who is counted, not the per-order lock on wrong digits.
    return client.get(LOOKUP.format(next(_numbers)), params={"phone_last4": "0000"}, headers=headers).status_code


# -- M2: only relaying channel keys act on behalf of users, and each key is bounded ---------------------------
def test_a_key_without_the_relay_scope_cannot_rotate_on_behalf_of_past_the_limit(app_and_factory):
    app, factory = app_and_factory
    keys = _keys(factory, route_only=["route"], reader=["orders:read"])
    with TestClient(app) as client:
        answers = [_ask(client, {"X-API-Key": keys["route_only"], "X-On-Behalf-Of": f"u{n}"}) for n in range(35)]
        assert answers[:30] == [404] * 30 and set(answers[30:]) == {429}   # the review's 40/40 answered: now limited
        # the address's bucket is spent, whichever non-relay key is shown
        assert _ask(client, {"X-API-Key": keys["reader"], "X-On-Behalf-Of": "fresh"}) == 429


def test_a_relaying_key_gets_per_user_buckets_but_a_ceiling_of_its_own(router):
    app, factory = _app(router, relay_lookups_per_key_per_minute=50)
    keys = _keys(factory, relay=["lookup:on_behalf", "orders:read"], other_relay=["lookup:on_behalf"])
    with TestClient(app) as client:
        relay = {"X-API-Key": keys["relay"]}
        assert [_ask(client, {**relay, "X-On-Behalf-Of": "web:alice"}) for _ in range(31)][-1] == 429
        assert _ask(client, {**relay, "X-On-Behalf-Of": "web:bob"}) == 404       # bob has his own allowance
        rotating = [_ask(client, {**relay, "X-On-Behalf-Of": f"web:{n}"}) for n in range(30)]
        assert rotating.count(404) == 50 - 32 and rotating[-1] == 429   # the key's ceiling (every try counts)
        assert _ask(client, {"X-API-Key": keys["other_relay"], "X-On-Behalf-Of": "web:x"}) == 404   # per key
        assert _ask(client, {}) == 404                                       # the address was never spent


def test_the_assistant_key_carries_the_relay_scope(app_and_factory):
    from api.auth.models import ApiKey

    _, factory = app_and_factory
    with factory() as session:
        assert "lookup:on_behalf" in session.scalar(select(ApiKey).where(ApiKey.name == "assistant")).scopes


# -- L15: X-Forwarded-For only from configured proxies ------------------------------------------------------
def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(router):
    app, _ = _app(router)
    with TestClient(app) as client:   # peer "testclient", no proxies configured
        answers = [_ask(client, {"X-Forwarded-For": f"10.0.0.{n}"}) for n in range(31)]
        assert answers[-1] == 429


def test_a_trusted_proxy_forwards_the_client_address(router):
    app, _ = _app(router, trusted_proxies=["testclient"])
    with TestClient(app) as client:
        answers = [_ask(client, {"X-Forwarded-For": "10.0.0.7"}) for _ in range(31)]
        assert answers[-1] == 429                                          # one citizen behind the proxy
        assert _ask(client, {"X-Forwarded-For": "10.0.0.8"}) == 404      # another citizen: own allowance


def test_serve_turns_uvicorns_loopback_trust_off():
    import inspect

    from hotline import cli

    assert "proxy_headers=False" in inspect.getsource(cli.serve)


# -- M6/L13: login throttling, lockout, no username oracle -------------------------------------------------
@pytest.fixture
def staff(app_and_factory):
    from api.auth.staff import create_staff

    _, factory = app_and_factory
    with transaction(factory) as session:
        create_staff(session, username="boss", password="boss-Passw0rd!", role="admin")
        create_staff(session, username="clerk", password="clerk-Passw0rd!", role="agent")
    return factory


def _login(client, username, password):
    return client.post("/api/v1/auth/token", json={"username": username, "password": password})


def test_repeated_failures_lock_the_username_out_with_retry_after(app_and_factory, staff):
    from api.auth.models import AuditRecord

    app, factory = app_and_factory
    with TestClient(app) as client:
        assert [_login(client, "boss", f"guess-{n}").status_code for n in range(5)] == [401] * 5
        locked = _login(client, "boss", "boss-Passw0rd!")          # even the right password, while locked
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    with factory() as session:
        actions = [r.action for r in session.scalars(select(AuditRecord).order_by(AuditRecord.id))]
    assert actions == ["login_failed"] * 5 + ["login_locked"]


def test_the_lockout_is_per_address_too_and_expires(app_and_factory, staff):
    app, _ = app_and_factory
    throttle = app.state.login_throttle
    with TestClient(app) as client:
        assert [_login(client, f"nobody{n}", "x").status_code for n in range(5)] == [401] * 5   # many names
        assert _login(client, "clerk", "clerk-Passw0rd!").status_code == 429    # this address is locked
    assert throttle.wait("clerk", "testclient") is not None
    assert throttle.wait("clerk", "testclient", now=throttle._locked_until["addr:testclient"] + 1) is None
    assert throttle.wait("clerk", "192.0.2.1") is None                          # another address is not


def test_a_success_resets_the_usernames_count(app_and_factory, staff):
    app, _ = app_and_factory
    with TestClient(app) as client:
        for _ in range(4):
            assert _login(client, "clerk", "wrong-password").status_code == 401
        assert _login(client, "clerk", "clerk-Passw0rd!").status_code == 200
    throttle = app.state.login_throttle
    assert throttle._failures.get("user:clerk") is None


def test_unknown_users_cost_one_password_check_against_a_precomputed_hash(app_and_factory, staff, monkeypatch):
    from api.auth import staff as staff_module

    staff_module._dummy_hash()   # precomputed before the attempts
    checks, hashes = [], []
    real_check = staff_module.check_password
    monkeypatch.setattr(staff_module, "check_password", lambda pw, stored: checks.append(stored) or real_check(pw, stored))
    monkeypatch.setattr(staff_module, "hash_password", lambda pw: hashes.append(pw) or "never-used")
    app, _ = app_and_factory
    with TestClient(app) as client:
        assert _login(client, "ghost", "some-password").status_code == 401
        assert _login(client, "boss", "wrong-password").status_code == 401
    assert len(checks) == 2 and hashes == []        # one check each, and no hashing on the request path
    assert checks[0] == staff_module._dummy_hash()  # the unknown user: checked against the dummy hash


# -- M7: tokens follow the account; staff disable / set-role ------------------------------------------------
def _token(client, username, password) -> dict:
    response = _login(client, username, password)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_a_disabled_account_s_token_is_refused_at_once(app_and_factory, staff):
    from api.auth.staff import disable_staff

    app, factory = app_and_factory
    with TestClient(app) as client:
        boss = _token(client, "boss", "boss-Passw0rd!")
        assert client.get("/api/v1/orders", headers=boss).status_code == 200
        with transaction(factory) as session:
            assert disable_staff(session, username="boss")
        assert client.get("/api/v1/orders", headers=boss).status_code == 401
        webhook = client.put("/api/v1/departments/430104001/webhook", json={"url": "http://127.0.0.1:9/x"},
                             headers=boss)
        assert webhook.status_code == 401
        assert _login(client, "boss", "boss-Passw0rd!").status_code == 401


def test_a_demoted_account_s_token_acts_with_the_new_role(app_and_factory, staff):
    from api.auth.staff import set_staff_role

    app, factory = app_and_factory
    with TestClient(app) as client:
        boss = _token(client, "boss", "boss-Passw0rd!")
        with transaction(factory) as session:
            set_staff_role(session, username="boss", role="official")
        webhook = client.put("/api/v1/departments/430104001/webhook", json={"url": "http://127.0.0.1:9/x"},
                             headers=boss)
        assert webhook.status_code == 403                       # admin-only: the review's 200 is gone
        assert client.get("/api/v1/orders", headers=boss).status_code == 200     # officials still read


def test_staff_disable_and_set_role_commands(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from api.auth.models import StaffUser
    from hotline.cli import app
    from hotline.core.config import get_settings

    url = f"sqlite:///{tmp_path / 'hotline.sqlite3'}"
    monkeypatch.setenv("HOTLINE_DATABASE_URL", url)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        created = runner.invoke(app, ["staff", "create", "--username", "li", "--role", "admin"],
                                input="Str0ng-Passw0rd\n")
        assert created.exit_code == 0, created.output
        assert runner.invoke(app, ["staff", "set-role", "li", "handler"]).exit_code == 2   # needs a department
        moved = runner.invoke(app, ["staff", "set-role", "li", "handler", "--department", "430104001"])
        assert moved.exit_code == 0 and "handler" in moved.output
        assert runner.invoke(app, ["staff", "set-role", "li", "emperor"]).exit_code == 2
        assert runner.invoke(app, ["staff", "disable", "nobody"]).exit_code == 2
        disabled = runner.invoke(app, ["staff", "disable", "li"])
        assert disabled.exit_code == 0 and "disabled li" in disabled.output
        with session_factory(make_engine(url))() as session:
            user = session.scalar(select(StaffUser).where(StaffUser.username == "li"))
            assert (user.active, user.role, user.department_code) == (False, "handler", "430104001")
        runner.invoke(app, ["staff", "create", "--username", "wang", "--role", "agent"], input="Str0ng-Passw0rd\n")
        listed = runner.invoke(app, ["staff", "list"], env={"COLUMNS": "200"})
        assert listed.exit_code == 0 and "2 staff accounts" in listed.output
        rows = [line for line in listed.output.splitlines() if " wang " in line or " li " in line]
        assert "agent" in rows[0] and "yes" in rows[0]                                   # active first
        assert "handler" in rows[1] and "430104001" in rows[1] and "disabled" in rows[1]
        assert "Passw0rd" not in listed.output and "scrypt" not in listed.output        # no password or hash
    finally:
        get_settings.cache_clear()


# -- L9: the SQLite file is private; L10: a short JWT secret is refused ---------------------------------------
def test_the_sqlite_database_and_its_folder_are_private(tmp_path):
    import os


    umask = os.umask(0o022)   # the usual umask, under which the review found 0644 files and a 0755 folder
    try:
        _check_private_sqlite(tmp_path)
    finally:
        os.umask(umask)


def _check_private_sqlite(tmp_path):
    import stat

    from sqlalchemy import text

    folder = tmp_path / "state"
    engine = make_engine(f"sqlite:///{folder / 'hotline.sqlite3'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))
        files = sorted(folder.iterdir())
        assert folder / "hotline.sqlite3" in files and len(files) >= 2            # the -wal file exists now
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    engine.dispose()
    old = tmp_path / "old.sqlite3"
    old.touch(mode=0o644)
    old.chmod(0o644)
    make_engine(f"sqlite:///{old}").dispose()
    assert stat.S_IMODE(old.stat().st_mode) == 0o600                             # an older install is tightened


def test_a_short_jwt_secret_is_refused_at_start_up(router, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from api.auth.staff import WeakSecretError
    from hotline import cli
    from hotline.core.config import get_settings

    with pytest.raises(WeakSecretError, match="at least 32"):
        create_app(router.settings.model_copy(update={"jwt_secret": "secret"}), router=router)
    create_app(router.settings.model_copy(update={"jwt_secret": "k" * 32}), router=router)   # 32 bytes will do
    monkeypatch.setenv("HOTLINE_JWT_SECRET", "changeme")
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(cli, "_load_router", lambda *_: pytest.fail("serve went on with a weak secret"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli.app, ["serve", "--no-seed", "--no-assistant"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2 and "HOTLINE_JWT_SECRET is 8 bytes" in result.output
