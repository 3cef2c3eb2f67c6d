"""Who may use the service, managed over HTTP by admins (the `access:admin` scope): staff accounts (list, create,
disable, change role) and API keys (list, create — the key is shown once —, revoke). The CLI (`hotline staff …`,
`hotline key …`) does the same through the same functions; every change is audited."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from api.auth.keys import SCOPES, create_api_key, list_api_keys, revoke_api_key
from api.auth.models import ApiKey, StaffUser
from api.auth.staff import ROLES, create_staff, disable_staff, list_staff, record_audit, set_staff_role
from api.deps import AccessAdmin, ClientDep, SessionsDep
from hotline.core.db import transaction

router = APIRouter(prefix="/api/v1", tags=["access"])


class StaffIn(BaseModel):
    username: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    password: str = Field(min_length=10, max_length=256)
    role: str = Field(description=", ".join(ROLES))
    department_code: str | None = Field(default=None, max_length=32, description="handlers: their department")


class RoleIn(BaseModel):
    role: str = Field(description=", ".join(ROLES))
    department_code: str | None = Field(default=None, max_length=32)


class KeyIn(BaseModel):
    name: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    scopes: list[str] = Field(min_length=1, max_length=len(SCOPES), description=", ".join(SCOPES))
    department_code: str | None = Field(default=None, max_length=32,
                                        description="a department's own system: acts as that department's handler")


def staff_json(user: StaffUser) -> dict:
    return {"username": user.username, "role": user.role, "department_code": user.department_code,
            "active": user.active, "created_at": user.created_at.isoformat() if user.created_at else None}


def key_json(key: ApiKey) -> dict:
    return {"name": key.name, "scopes": key.scopes, "department_code": key.department_code,
            "created_at": key.created_at.isoformat() if key.created_at else None,
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None}


@router.get("/staff")
def staff_list(sessions: SessionsDep, admin: AccessAdmin) -> list[dict]:
    with sessions() as session:
        return [staff_json(user) for user in list_staff(session)]


@router.post("/staff", status_code=201)
def staff_create(body: StaffIn, sessions: SessionsDep, admin: AccessAdmin, client: ClientDep) -> dict:
    try:
        with transaction(sessions) as session:
            user = create_staff(session, username=body.username, password=body.password, role=body.role,
                                department_code=body.department_code)
            record_audit(session, actor=admin.name, action="staff_created", client=client, username=body.username, role=body.role)
            return staff_json(user)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.post("/staff/{username}/disable")
def staff_disable(username: str, sessions: SessionsDep, admin: AccessAdmin, client: ClientDep) -> dict:
    if username == admin.name:
        raise HTTPException(409, "an admin cannot disable their own account (ask another admin)")
    try:
        with transaction(sessions) as session:
            changed = disable_staff(session, username=username)
            record_audit(session, actor=admin.name, action="staff_disable", client=client, username=username)
    except ValueError as exc:
        raise HTTPException(404, str(exc)) from None
    return {"username": username, "active": False, "changed": changed}


@router.put("/staff/{username}/role")
def staff_role(username: str, body: RoleIn, sessions: SessionsDep, admin: AccessAdmin, client: ClientDep) -> dict:
    try:
        with transaction(sessions) as session:
            user = set_staff_role(session, username=username, role=body.role, department_code=body.department_code)
            record_audit(session, actor=admin.name, action="staff_role_set", client=client, username=username, role=body.role)
            return staff_json(user)
    except ValueError as exc:
        raise HTTPException(404 if "no staff user" in str(exc) else 422, str(exc)) from None


@router.get("/keys")
def key_list(sessions: SessionsDep, admin: AccessAdmin) -> list[dict]:
    with sessions() as session:
        return [key_json(key) for key in list_api_keys(session)]


@router.post("/keys", status_code=201)
def key_create(body: KeyIn, sessions: SessionsDep, admin: AccessAdmin, client: ClientDep) -> dict:
    """The key itself is in this answer only: it is stored hashed."""
    try:
        with transaction(sessions) as session:
            row, key = create_api_key(session, name=body.name, scopes=body.scopes,
                                      department_code=body.department_code)
            record_audit(session, actor=admin.name, action="key_created", client=client, name=body.name, scopes=sorted(body.scopes))
            return key_json(row) | {"key": key}
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.delete("/keys/{name}", status_code=204)
def key_revoke(name: str, sessions: SessionsDep, admin: AccessAdmin, client: ClientDep) -> Response:
    with transaction(sessions) as session:
        if not revoke_api_key(session, name=name):
            raise HTTPException(404, f"no active API key named {name!r}")
        record_audit(session, actor=admin.name, action="key_revoked", client=client, name=name)
    return Response(status_code=204)
