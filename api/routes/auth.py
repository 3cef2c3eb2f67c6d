"""Staff login: a JWT for the Authorization header, throttled per account and address (M6), every attempt audited."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from api.auth.models import AuditRecord
from api.auth.staff import authenticate, issue_token
from api.deps import ClientDep, JwtKeyDep, LoginThrottleDep, SessionsDep
from hotline.core.db import transaction

router = APIRouter(prefix="/api/v1", tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


@router.post("/auth/token")
def login(body: LoginIn, sessions: SessionsDep, throttle: LoginThrottleDep, jwt_key: JwtKeyDep,
          client: ClientDep) -> dict:
    """Staff login: a JWT for the Authorization header. Every attempt is audited."""
    wait = throttle.wait(body.username, client)
    if wait is not None:   # locked out after repeated failures (M6): refused without checking the password
        with transaction(sessions) as session:
            session.add(AuditRecord(actor=body.username[:64], action="login_locked", client=client,
                                    detail={"retry_after_s": int(wait) + 1}))
        raise HTTPException(429, "too many failed logins; try again later", headers={"Retry-After": str(int(wait) + 1)})
    with transaction(sessions) as session:
        user = authenticate(session, username=body.username, password=body.password, client=client)
        token = issue_token(user, jwt_key) if user else None
    if token is None:
        throttle.failed(body.username, client)
        raise HTTPException(401, "wrong username or password")
    throttle.succeeded(body.username)
    return {"access_token": token, "token_type": "bearer", "role": user.role,
            "department_code": user.department_code}
