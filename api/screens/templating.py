"""Rendering a staff page: Jinja2 templates (autoescaped), the navigation a role may use, the CSRF token, and the
headers every page carries (a strict Content-Security-Policy: only our own script and style, as on /chat)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.deps import Principal
from api.screens.session import COOKIE, csrf_token
from hotline.core.clock import CITY_TZ
from orders import roles

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SCREENS = {"desk": ("坐席受理", "/desk"), "review": ("派单与联合研判", "/desk/review"),
           "department": ("承办单位", "/desk/department"), "supervision": ("督办与回访", "/desk/supervision"),
           "cockpit": ("驾驶舱", "/cockpit"),
           "admin": ("系统管理", "/desk/admin")}


def local_time(moment: dt.datetime | str | None, fmt: str = "%m-%d %H:%M") -> str:
    """A stored (UTC) moment, or its ISO text, on the city's clock, as staff read it."""
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return moment.astimezone(CITY_TZ).strftime(fmt) if moment else ""


TEMPLATES.env.filters["local"] = local_time
TEMPLATES.env.filters["percent"] = lambda value: f"{value * 100:.1f}%" if value is not None else "—"


def navigation(staff: Principal | None) -> list[tuple[str, str, str]]:
    """(screen, label, path) for each screen the staff member's role works in."""
    if staff is None:
        return []
    return [(screen, *SCREENS[screen]) for screen in roles.screens_of(staff.role) if screen in SCREENS]


def render(request: Request, template: str, *, staff: Principal | None, status_code: int = 200,
           **context) -> HTMLResponse:
    token = request.cookies.get(COOKIE)
    role_label = roles.RULES[staff.role].label if staff and staff.role in roles.RULES else None
    response = TEMPLATES.TemplateResponse(
        request, template, {"staff": staff, "role_label": role_label, "nav": navigation(staff),
                            "csrf": csrf_token(request.app.state.jwt_key, token) if staff and token else "",
                            **context}, status_code=status_code)
    return protect(response)


def protect(response):
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"   # staff pages hold citizens' complaints
    return response
