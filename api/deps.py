"""The dependencies routes share, as `Annotated` types (the FastAPI full-stack template's deps.py).

A route names what it needs in its signature — `sessions: SessionsDep`, `router: RouterDep`, `settings: SettingsDep`,
`caller: Annotated[Principal, Depends(require_scope("orders:read"))]` — instead of reading `request.app.state`.
What the app holds is set once in `api/app.py` (`create_app`); background work that runs outside a request
(the outbox worker, WeChat filing) takes the app itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session, sessionmaker

from api.auth.keys import verify_api_key
from api.auth.staff import LoginThrottle, current_claims, read_token
from api.observability import Metrics
from api.ratelimit import RateLimiter
from hotline.core.config import Settings
from orders import roles
from orders.service import Actor
from routing.service import RouterReloader


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


def get_router(request: Request) -> Any:
    """The loaded router; a 503 while it loads (index and model take a while at start-up)."""
    if request.app.state.router is None:
        raise HTTPException(503, "router is still loading")
    return request.app.state.router


def get_router_if_loaded(request: Request) -> Any | None:
    """The router when loaded, else None: for routes that work without it (codes pass, names wait)."""
    return request.app.state.router


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_public_limiter(request: Request) -> RateLimiter:
    return request.app.state.public_limiter


def get_relay_limiter(request: Request) -> RateLimiter:
    return request.app.state.relay_limiter


def get_lookup_failures(request: Request) -> RateLimiter:
    return request.app.state.lookup_failures


def get_jwt_key(request: Request) -> str:
    return request.app.state.jwt_key


def get_reloader(request: Request) -> RouterReloader:
    """The one background rebuilder of the router after a knowledge-base change (created on first use): the old
    router answers until the new one is swapped in."""
    app = request.app
    if getattr(app.state, "router_reloader", None) is None:
        def swap(fresh) -> None:
            app.state.router = fresh   # one attribute assignment: requests see the old or the new router, whole
        app.state.router_reloader = RouterReloader(lambda: app.state.router, swap, app.state.settings)
    return app.state.router_reloader


STAFF_COOKIE = "hotline_staff"   # the staff screens' session (api/screens/session.py sets it)
SettingsDep = Annotated[Settings, Depends(get_settings)]
ReloaderDep = Annotated[RouterReloader, Depends(get_reloader)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
RouterDep = Annotated[Any, Depends(get_router)]
LoadedRouterDep = Annotated[Any | None, Depends(get_router_if_loaded)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
PublicLimiterDep = Annotated[RateLimiter, Depends(get_public_limiter)]
RelayLimiterDep = Annotated[RateLimiter, Depends(get_relay_limiter)]   # per key that relays citizens
LookupFailuresDep = Annotated[RateLimiter, Depends(get_lookup_failures)]   # wrong phone digits per order number
JwtKeyDep = Annotated[str, Depends(get_jwt_key)]


def get_login_throttle(request: Request) -> LoginThrottle:
    return request.app.state.login_throttle


LoginThrottleDep = Annotated[LoginThrottle, Depends(get_login_throttle)]


def client_address(request: Request) -> str | None:
    """The caller's address as seen after the trusted proxies (api/app.py), for limits and audit."""
    return request.client.host if request.client else None


ClientDep = Annotated[str | None, Depends(client_address)]


# -- who is calling ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Principal(Actor):
    """The caller as the order loop sees it (an Actor: name, role, department) plus what its credential grants:
    a machine client (X-API-Key, role "system", or "handler" for a department's key) or a staff member (JWT)."""

    scopes: frozenset[str] = frozenset()
    kind: str = "key"           # "key" (X-API-Key) or "staff" (JWT)

    @property
    def idempotency_scope(self) -> str:
        """Whose Idempotency-Keys these are: key names and usernames are unique within their kind (L12)."""
        return f"{self.kind}:{self.name}"


def staff_principal(sessions, jwt_key: str, token: str) -> Principal | None:
    """The staff member a token (a Bearer header or the screens' cookie) stands for, with the account's state now,
    not when the token was issued (M7); None for a bad, expired, disabled or unknown one."""
    claims = read_token(token, jwt_key) if token else None
    if claims is not None:
        with sessions() as session:
            claims = current_claims(session, claims)
    if claims is None:
        return None
    return Principal(claims["sub"], claims["role"], claims.get("dept"), scopes=roles.scopes_of(claims["role"]),
                     kind="staff")


def department_names(router_) -> dict[str, str]:
    """Unit code → name from the loaded knowledge base (empty while it loads)."""
    return {code: unit.name for code, unit in router_.kb.departments.items()} if router_ is not None else {}


def require_scope(scope: str):
    """Dependency: a staff Bearer token or an X-API-Key that carries `scope`."""
    def check(request: Request, sessions: SessionsDep, jwt_key: JwtKeyDep,
              x_api_key: Annotated[str | None, Header()] = None,
              authorization: Annotated[str | None, Header()] = None) -> Principal:
        # The staff screens' cookie counts for reads only (the cockpit's charts call the indicator API with it):
        # a write needs the header, which another site's page cannot send (no CSRF through the API).
        cookie = request.cookies.get(STAFF_COOKIE) if request.method in ("GET", "HEAD") else None
        if not authorization and not x_api_key and cookie:
            authorization = f"Bearer {cookie}"
        if authorization and authorization.lower().startswith("bearer "):
            principal = staff_principal(sessions, jwt_key, authorization[7:].strip())
            if principal is None:
                raise HTTPException(401, "invalid or expired token", headers={"WWW-Authenticate": "Bearer"})
        elif x_api_key:
            with sessions() as session:
                key = verify_api_key(session, x_api_key)
            if key is None:
                raise HTTPException(401, "invalid or revoked API key")
            # A key bound to a department is that department's system: it acts as the department's handler.
            principal = Principal(key.name, "handler" if key.department_code else "system", key.department_code,
                                  scopes=frozenset(key.scopes))
        else:
            raise HTTPException(401, "send a Bearer token (staff) or an X-API-Key header (systems)",
                                headers={"WWW-Authenticate": "Bearer"})
        if scope not in principal.scopes:
            raise HTTPException(403, f"{principal.name} lacks the {scope!r} permission")
        return principal
    return check


def caller_with(scope: str) -> Any:
    """`Annotated[Principal, …]` for a route that needs `scope`: `caller: caller_with("orders:read")`."""
    return Annotated[Principal, Depends(require_scope(scope))]


OrdersReader = caller_with("orders:read")
OrdersWriter = caller_with("orders:write")
IndicatorsReader = caller_with("indicators:read")
RouteCaller = caller_with("route")
KnowledgeBaseWriter = caller_with("kb:write")
AccessAdmin = caller_with("access:admin")
