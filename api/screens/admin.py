"""系统管理 (/desk/admin): the responsibility list (search, and edit an entry through the same validated path as the
API: the change is checked against the whole list, written with a changelog record, and the router is rebuilt in
the background), staff accounts, API keys and department systems' webhooks. Secrets (a new key, a webhook's
signing secret) are shown once, on the page that created them."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api.auth.keys import SCOPES, create_api_key, list_api_keys, revoke_api_key
from api.auth.staff import ROLES, create_staff, disable_staff, list_staff, record_audit, set_staff_role
from api.deps import ClientDep, LoadedRouterDep, Principal, ReloaderDep, SessionsDep, SettingsDep, department_names
from api.screens.session import CsrfChecked, staff_screen
from api.screens.templating import render
from hotline.core.db import transaction
from knowledge_base import management
from orders import outbox, roles

router = APIRouter(include_in_schema=False)
Admin = Annotated[Principal, Depends(staff_screen("admin"))]
SHOWN_ENTRIES = 50


def _lists(sessions) -> dict:
    with sessions() as session:
        return {"people": [{"username": u.username, "role": u.role, "role_label": roles.RULES[u.role].label
                            if u.role in roles.RULES else u.role, "department_code": u.department_code,
                            "active": u.active} for u in list_staff(session)],
                "keys": [{"name": k.name, "scopes": k.scopes, "department_code": k.department_code,
                          "created_at": k.created_at, "revoked": k.revoked_at is not None}
                         for k in list_api_keys(session)],
                "endpoints": [{"department_code": e.department_code, "url": e.url, "active": e.active}
                              for e in outbox.list_endpoints(session)]}


def _entries(router_, q: str) -> tuple[int, list]:
    if router_ is None:
        return 0, []
    entries = [e for e in router_.kb.entries.values() if e.in_force()]
    for word in q.split():
        entries = [e for e in entries if word in e.id or word in e.name or any(word in k for k in e.keywords)]
    return len(entries), entries[:SHOWN_ENTRIES]


def _page(request: Request, staff: Principal, sessions, router_, reloader, *, q: str = "", status_code: int = 200,
          **extra) -> Response:
    total, entries = _entries(router_, q)
    return render(request, "admin.html", staff=staff, active="admin", q=q, total=total, entries=entries,
                  departments=department_names(router_), roles=[(r, roles.RULES[r].label) for r in ROLES],
                  scopes=SCOPES, kb_version=router_.kb.version if router_ else None,
                  rebuild=dict(reloader.status), status_code=status_code, **_lists(sessions), **extra)


@router.get("/desk/admin")
def admin(request: Request, staff: Admin, sessions: SessionsDep, router_: LoadedRouterDep, reloader: ReloaderDep,
          q: str = "") -> Response:
    return _page(request, staff, sessions, router_, reloader, q=q[:50])


@router.get("/desk/admin/kb/{entry_id}")
def entry_page(entry_id: str, request: Request, staff: Admin, router_: LoadedRouterDep) -> Response:
    entry = router_.kb.entries.get(entry_id) if router_ is not None else None
    if entry is None:
        return render(request, "message.html", staff=staff, heading="找不到事项", message=f"权责清单中没有 {entry_id}",
                      status_code=404)
    return render(request, "entry.html", staff=staff, active="admin", entry=entry,
                  departments=department_names(router_))


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("，", ",").replace(",", "\n").splitlines() if line.strip()]


@router.post("/desk/admin/kb/{entry_id}", dependencies=[CsrfChecked])
async def edit_entry(entry_id: str, request: Request, staff: Admin, settings: SettingsDep,
                     router_: LoadedRouterDep, reloader: ReloaderDep,
                     time_limit_days: Annotated[str, Form(max_length=4)] = "",
                     keywords: Annotated[str, Form(max_length=4000)] = "",
                     boundary: Annotated[str, Form(max_length=2000)] = "",
                     examples: Annotated[str, Form(max_length=20000)] = "",
                     note: Annotated[str, Form(max_length=500)] = "") -> Response:
    entry = router_.kb.entries.get(entry_id) if router_ is not None else None
    if entry is None:
        return render(request, "message.html", staff=staff, heading="找不到事项", message=f"权责清单中没有 {entry_id}",
                      status_code=404)
    changes: dict = {}
    if time_limit_days.strip():
        if not time_limit_days.strip().isdigit():
            return render(request, "entry.html", staff=staff, active="admin", entry=entry, status_code=422,
                          departments=department_names(router_), error="办理时限须为整数（工作日）")
        changes["time_limit_days"] = int(time_limit_days)
    changes["keywords"] = _lines(keywords)
    changes["boundary"] = boundary.strip()
    changes["examples"] = [line.strip() for line in examples.splitlines() if line.strip()]
    changes = {k: v for k, v in changes.items() if v != getattr(entry, k)}
    if not changes:
        return render(request, "entry.html", staff=staff, active="admin", entry=entry,
                      departments=department_names(router_), notice="没有修改")
    try:
        _, version = await run_in_threadpool(lambda: management.modify_entry(
            settings.city_dir, entry_id=entry_id, changes=changes, author=staff.name, note=note.strip()))
    except management.ChangeRejected as exc:
        return render(request, "entry.html", staff=staff, active="admin", entry=entry, status_code=422,
                      departments=department_names(router_),
                      error="修改会破坏权责清单，未保存：" + "；".join(map(str, exc.errors)))
    rebuild = reloader.request(version)
    return render(request, "entry.html", staff=staff, active="admin", entry=entry,
                  departments=department_names(router_),
                  notice=f"已保存为清单版本 {version}：{'、'.join(changes)} 已修改；索引正在后台重建（{rebuild['state']}），"
                         "重建完成前沿用旧版本分拨。")


@router.post("/desk/admin/staff", dependencies=[CsrfChecked])
def add_staff(request: Request, staff: Admin, sessions: SessionsDep, router_: LoadedRouterDep, reloader: ReloaderDep,
              client: ClientDep, username: Annotated[str, Form(max_length=64)] = "",
              password: Annotated[str, Form(max_length=256)] = "", role: Annotated[str, Form(max_length=16)] = "",
              department_code: Annotated[str, Form(max_length=32)] = "") -> Response:
    try:
        with transaction(sessions) as session:
            create_staff(session, username=username.strip(), password=password, role=role,
                         department_code=department_code.strip() or None)
            record_audit(session, actor=staff.name, action="staff_created", client=client, username=username.strip(), role=role)
    except ValueError as exc:
        return _page(request, staff, sessions, router_, reloader, error=f"未创建：{exc}", status_code=422)
    return _page(request, staff, sessions, router_, reloader, notice=f"已创建账号 {username.strip()}")


@router.post("/desk/admin/staff/{username}", dependencies=[CsrfChecked])
def change_staff(username: str, request: Request, staff: Admin, sessions: SessionsDep, router_: LoadedRouterDep,
                 reloader: ReloaderDep, client: ClientDep, change: Annotated[str, Form(max_length=16)] = "",
                 role: Annotated[str, Form(max_length=16)] = "",
                 department_code: Annotated[str, Form(max_length=32)] = "") -> Response:
    if change == "disable" and username == staff.name:
        return _page(request, staff, sessions, router_, reloader, error="不能停用自己的账号", status_code=409)
    try:
        with transaction(sessions) as session:
            if change == "disable":
                disable_staff(session, username=username)
            else:
                set_staff_role(session, username=username, role=role, department_code=department_code.strip() or None)
            record_audit(session, actor=staff.name, action=f"staff_{change or 'role'}", client=client, username=username, role=role or None)
    except ValueError as exc:
        return _page(request, staff, sessions, router_, reloader, error=f"未修改：{exc}", status_code=422)
    return _page(request, staff, sessions, router_, reloader,
                 notice=f"已停用 {username}" if change == "disable" else f"{username} 的角色已改为 {role}")


@router.post("/desk/admin/keys", dependencies=[CsrfChecked])
def add_key(request: Request, staff: Admin, sessions: SessionsDep, router_: LoadedRouterDep, reloader: ReloaderDep,
            client: ClientDep, name: Annotated[str, Form(max_length=64)] = "",
            scopes: Annotated[list[str] | None, Form()] = None,
            department_code: Annotated[str, Form(max_length=32)] = "") -> Response:
    try:
        with transaction(sessions) as session:
            _, key = create_api_key(session, name=name.strip(), scopes=scopes or [],
                                    department_code=department_code.strip() or None)
            record_audit(session, actor=staff.name, action="key_created", client=client, name=name.strip(), scopes=sorted(scopes or []))
    except ValueError as exc:
        return _page(request, staff, sessions, router_, reloader, error=f"未创建：{exc}", status_code=422)
    return _page(request, staff, sessions, router_, reloader, shown_secret=("接口密钥", name.strip(), key))


@router.post("/desk/admin/keys/{name}/revoke", dependencies=[CsrfChecked])
def revoke_key(name: str, request: Request, staff: Admin, sessions: SessionsDep, router_: LoadedRouterDep,
               reloader: ReloaderDep, client: ClientDep) -> Response:
    with transaction(sessions) as session:
        revoked = revoke_api_key(session, name=name)
        if revoked:
            record_audit(session, actor=staff.name, action="key_revoked", client=client, name=name)
    return _page(request, staff, sessions, router_, reloader, notice=f"已吊销 {name}" if revoked else None,
                 error=None if revoked else f"没有有效的密钥 {name}", status_code=200 if revoked else 404)


@router.post("/desk/admin/webhooks", dependencies=[CsrfChecked])
def set_webhook(request: Request, staff: Admin, sessions: SessionsDep, router_: LoadedRouterDep,
                reloader: ReloaderDep, client: ClientDep, department_code: Annotated[str, Form(max_length=32)] = "",
                url: Annotated[str, Form(max_length=512)] = "") -> Response:
    known = department_names(router_)
    if known and department_code.strip() not in known:
        return _page(request, staff, sessions, router_, reloader, error=f"未知的单位代码 {department_code}",
                     status_code=422)
    try:
        with transaction(sessions) as session:
            endpoint, secret = outbox.register_endpoint(session, department_code=department_code.strip(),
                                                        url=url.strip())
            record_audit(session, actor=staff.name, action="webhook_set", client=client, department=endpoint.department_code)
    except ValueError as exc:
        return _page(request, staff, sessions, router_, reloader, error=f"未保存：{exc}", status_code=422)
    return _page(request, staff, sessions, router_, reloader,
                 shown_secret=("签名密钥", known.get(department_code.strip(), department_code), secret))
