"""Knowledge-base management through the API: a change is validated, written, logged, and the router is rebuilt in
the background and swapped in while the old one keeps answering."""
from __future__ import annotations

import datetime as dt

import pytest
import yaml
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth.keys import create_api_key
from hotline.core.db import transaction
from knowledge_base import management
from knowledge_base.kb import load_knowledge_base

BIKES = {
    "name": "共享单车乱停放治理", "type": "行政检查", "category": "010101",
    "legal_basis": "《长沙市城市管理条例》；《长沙市互联网租赁自行车管理办法》",
    "duty_mode": "督促运营企业限时清理调度，街面巡查", "lead": "chengguan", "level": "district",
    "keywords": ["共享单车", "单车乱停", "小黄车"], "time_limit_days": 2,
    "examples": ["地铁口共享单车堆成山，人都走不过去", "小区门口一排共享单车乱停放，车子都开不进来😤",
                 "望月湖这边的hellobike单车倒了一地，没人管"],
    "note": "新增互联网租赁自行车停放事项",
}


@pytest.fixture
def kb_client(router, tiny_city_copy):
    """The app over a writable copy of the tiny city, with an editor key and a reader key."""
    router.settings = router.settings.model_copy(update={"data_root": tiny_city_copy.parent, "outbox_poll_s": 0})
    app = create_app(router.settings, router=router)
    with TestClient(app) as client:
        with transaction(app.state.sessions) as session:
            client.editor = {"X-API-Key": create_api_key(session, name="kb-admin", scopes=["kb:write", "orders:read"])[1]}
            client.reader = {"X-API-Key": create_api_key(session, name="reader", scopes=["orders:read", "route"])[1]}
        client.city_dir = tiny_city_copy
        yield client


def _wait(client) -> dict:
    status = client.app.state.router_reloader.wait(timeout=120)
    assert status["state"] == "ready", status
    return status


def test_add_an_entry_then_the_new_router_knows_it(kb_client):
    before = kb_client.app.state.router
    response = kb_client.post("/api/v1/kb/entries", json=BIKES, headers=kb_client.editor)
    assert response.status_code == 202, response.text
    body = response.json()
    new_id = body["entry"]["id"]
    assert new_id.startswith("KB-01-") and body["entry"]["version"] == 1
    # the old router answered until the swap, and still had no such entry
    assert new_id not in before.kb.entries
    _wait(kb_client)
    after = kb_client.app.state.router
    assert after is not before and new_id in after.kb.entries and new_id in after.matcher.model.entry_ids
    assert after.feedback is before.feedback, "corrections must survive a rebuild"
    assert kb_client.get(f"/api/v1/kb/entries/{new_id}", headers=kb_client.reader).json()["name"] == BIKES["name"]
    log = kb_client.get("/api/v1/kb/changelog", headers=kb_client.reader).json()
    assert log[0]["changes"][0] == {"action": "add", "id": new_id, "note": BIKES["note"]}
    assert log[0]["author"] == "kb-admin"
    routed = kb_client.post("/api/v1/route", json={"text": "岳麓区望月湖街道地铁口共享单车乱停放，堵住了盲道"},
                            headers=kb_client.reader)
    assert routed.status_code == 200
    # what was written is a valid list that `hotline kb validate` would accept
    assert new_id in load_knowledge_base(kb_client.city_dir).entries


def test_modify_and_retire_bump_the_version_and_keep_history(kb_client):
    entry_id = "KB-01-001"
    old_limit = kb_client.app.state.router.kb.entries[entry_id].time_limit_days
    changed = kb_client.patch(f"/api/v1/kb/entries/{entry_id}", headers=kb_client.editor,
                              json={"changes": {"time_limit_days": old_limit + 2}, "note": "按新规缩短时限"})
    assert changed.status_code == 202, changed.text
    assert changed.json()["entry"]["version"] == 2
    _wait(kb_client)
    assert kb_client.app.state.router.kb.entries[entry_id].time_limit_days == old_limit + 2

    retired = kb_client.post(f"/api/v1/kb/entries/{entry_id}/retire", json={"reason": "职责已划转至街道"},
                             headers=kb_client.editor)
    assert retired.status_code == 202 and retired.json()["entry"]["in_force"] is False
    _wait(kb_client)
    current = kb_client.app.state.router
    assert entry_id in current.kb.entries and not current.kb.entries[entry_id].in_force()
    assert entry_id not in current.matcher.model.entry_ids
    listed = kb_client.get("/api/v1/kb/entries", headers=kb_client.reader).json()
    assert entry_id not in [e["id"] for e in listed["entries"]]
    again = kb_client.post(f"/api/v1/kb/entries/{entry_id}/retire", json={"reason": "再次"}, headers=kb_client.editor)
    assert again.status_code == 422 and "already out of force" in str(again.json())
    versions = [c["version"] for c in yaml.safe_load((kb_client.city_dir / "changelog.yaml").read_text())]
    assert len(versions) == len(set(versions)), "each change gets its own list version"


@pytest.mark.parametrize("change, words", [
    ({"lead": "no_such_bureau"}, "unknown department kind"),
    ({"category": "999999"}, "unknown taxonomy code"),
    ({"examples": ["太少"]}, "examples"),
    ({"time_limit_days": 0}, "time_limit_days"),
    # review 2026-12-06, L14: free text is bounded
    ({"boundary": "共享单车乱停放归城管，" * 300}, "at most 2000 characters"),
    ({"examples": ["小区门口共享单车乱停乱放堵住消防通道" * 200] * 5}, "at most 2000 characters"),
    ({"name": "共享单车" * 100}, "at most 100 characters"),
])
def test_a_bad_change_is_refused_with_the_reason_and_writes_nothing(kb_client, change, words):
    files = {p: p.read_bytes() for p in kb_client.city_dir.rglob("*") if p.is_file()}
    response = kb_client.post("/api/v1/kb/entries", json={**BIKES, **change}, headers=kb_client.editor)
    assert response.status_code == 422 and words in str(response.json()), response.text
    assert {p: p.read_bytes() for p in kb_client.city_dir.rglob("*") if p.is_file()} == files
    assert getattr(kb_client.app.state, "router_reloader", None) is None or \
        kb_client.app.state.router_reloader.status["state"] == "idle"


def test_only_editors_change_the_list(kb_client):
    assert kb_client.post("/api/v1/kb/entries", json=BIKES, headers=kb_client.reader).status_code == 403
    assert kb_client.patch("/api/v1/kb/entries/KB-01-001", json={"changes": {"name": "x"}}).status_code == 401
    missing = kb_client.patch("/api/v1/kb/entries/KB-99-999", json={"changes": {"time_limit_days": 3}},
                              headers=kb_client.editor)
    assert missing.status_code == 404
    unknown_field = kb_client.patch("/api/v1/kb/entries/KB-01-001", json={"changes": {"id": "KB-00-000"}},
                                    headers=kb_client.editor)
    assert unknown_field.status_code == 422 and "not an editable field" in str(unknown_field.json())


def test_a_patch_with_nested_lists_is_refused_and_writes_nothing(kb_client):
    """Security review 2026-12-06: keywords [[[…]]] nested 500 deep were taken (202) and written as their repr."""
    files = {p: p.read_bytes() for p in kb_client.city_dir.rglob("*") if p.is_file()}
    nested: list = ["摆摊"]
    for _ in range(500):
        nested = [nested]
    for changes in ({"keywords": nested}, {"keywords": [["摆摊", "占道"]]}, {"examples": [{"text": "占道摆摊"}] * 3}):
        response = kb_client.patch("/api/v1/kb/entries/KB-01-001", json={"changes": changes}, headers=kb_client.editor)
        assert response.status_code == 422 and "must be text" in response.text, response.text
    assert {p: p.read_bytes() for p in kb_client.city_dir.rglob("*") if p.is_file()} == files


def test_an_edit_keeps_the_files_comments(tiny_city_copy):
    path = next((tiny_city_copy / "responsibilities").glob("*.yaml"))
    path.write_text("# 城市管理清单（手工维护的注释）\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    entry_id = yaml.safe_load(path.read_text(encoding="utf-8"))[0]["id"]
    management.modify_entry(tiny_city_copy, entry_id=entry_id, changes={"boundary": "不含小区内部（物业负责）"},
                            author="test", today=dt.date(2026, 11, 21))
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# 城市管理清单（手工维护的注释）") and "不含小区内部（物业负责）" in text
    assert load_knowledge_base(tiny_city_copy).entries[entry_id].version == 2
