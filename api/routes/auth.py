"""Staff login: a JWT for the Authorization header, throttled per account and address (M6), every attempt audited."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from api.auth.staff import log_in
from api.deps import ClientDep, JwtKeyDep, LoginThrottleDep, SessionsDep

router = APIRouter(prefix="/api/v1", tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


@router.post("/auth/token")
def login(body: LoginIn, sessions: SessionsDep, throttle: LoginThrottleDep, jwt_key: JwtKeyDep,
          client: ClientDep) -> dict:
    """Staff login: a JWT for the Authorization header. Every attempt is audited."""
    outcome = log_in(sessions, throttle, username=body.username, password=body.password, client=client,
                     jwt_key=jwt_key)
    if outcome.retry_after_s is not None:
        raise HTTPException(429, "too many failed logins; try again later",
                            headers={"Retry-After": str(outcome.retry_after_s)})
    if outcome.token is None:
        raise HTTPException(401, "wrong username or password")
    return {"access_token": outcome.token, "token_type": "bearer", "role": outcome.user.role,
            "department_code": outcome.user.department_code}
