"""The public pages: the landing page, staff login and logout, the API documentation served offline, and the
screens' own assets (a fixed list of files: nothing else on disk is reachable)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import fastapi_offline
from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, RedirectResponse, Response

from api.auth.staff import log_in
from api.deps import ClientDep, JwtKeyDep, LoadedRouterDep, LoginThrottleDep, SessionsDep, SettingsDep
from api.screens.session import COOKIE, CsrfChecked, OptionalStaff
from api.screens.templating import protect, render

router = APIRouter(include_in_schema=False)

OWN_ASSETS = Path(__file__).resolve().parent / "static"
DOCS_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"   # swagger-ui and redoc, from PyPI
ASSET_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".png": "image/png",
               ".svg": "image/svg+xml"}
ASSETS = {path.name: path for folder in (OWN_ASSETS, DOCS_ASSETS) for path in folder.iterdir()
          if path.suffix in ASSET_TYPES and path.is_file()}
SCREEN_DESCRIPTIONS = {"desk": "接听来电、登记诉求，查看分拨建议、相似工单与来电历史，确认派单",
                       "review": "联合研判与退单审核：改派、主协办拆分、退回",
                       "department": "本单位待办：签收、退单、办理、申请延期、办结",
                       "supervision": "预警驱动的督办清单与回访工作单",
                       "cockpit": "今日/本周/本月诉求态势、同比环比、地图、单位考核与预警", "admin": "权责清单、工作人员、接口密钥与部门对接"}
# The docs pages run Swagger's and ReDoc's own inline start-up script: their policy allows inline script for
# those two pages only; everything they load still comes from this server.
DOCS_POLICY = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; font-src 'self' data:; "
               "base-uri 'none'; frame-ancestors 'none'")


@router.get("/")
def landing(request: Request, staff: OptionalStaff, router_: LoadedRouterDep, settings: SettingsDep) -> Response:
    return render(request, "landing.html", staff=staff, descriptions=SCREEN_DESCRIPTIONS, city=settings.city,
                  router_ready=router_ is not None, kb_version=router_.kb.version if router_ is not None else None)


def _safe_next(next_path: str | None) -> str:
    """Only a path on this server (no scheme, no host, no //host): an open redirect would lend our name to phishing."""
    if not next_path or not next_path.startswith("/") or next_path.startswith("//") or "\\" in next_path:
        return "/"
    parts = urlsplit(next_path)
    return "/" if parts.scheme or parts.netloc else next_path


@router.get("/login")
def login_page(request: Request, staff: OptionalStaff, next: str | None = None) -> Response:  # noqa: A002
    return render(request, "login.html", staff=staff, next_path=_safe_next(next))


@router.post("/login")
def login(request: Request, sessions: SessionsDep, throttle: LoginThrottleDep, jwt_key: JwtKeyDep,
          client: ClientDep, username: Annotated[str, Form(max_length=64)] = "",
          password: Annotated[str, Form(max_length=256)] = "",
          next: Annotated[str, Form(max_length=512)] = "/") -> Response:  # noqa: A002
    """The same checks as POST /api/v1/auth/token (throttle, audit), answered with the session cookie."""
    target = _safe_next(next)
    if not username or not password:
        return render(request, "login.html", staff=None, next_path=target, username=username,
                      error="请输入用户名和密码", status_code=422)
    outcome = log_in(sessions, throttle, username=username, password=password, client=client, jwt_key=jwt_key)
    if outcome.retry_after_s is not None:
        return render(request, "login.html", staff=None, next_path=target, username=username,
                      error=f"登录失败次数过多，请 {outcome.retry_after_s} 秒后再试", status_code=429)
    if outcome.token is None:
        return render(request, "login.html", staff=None, next_path=target, username=username,
                      error="用户名或密码错误", status_code=401)
    token = outcome.token
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        path="/")
    return response


@router.post("/logout", dependencies=[CsrfChecked])
def logout() -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/docs")
def swagger(request: Request) -> Response:
    page = get_swagger_ui_html(openapi_url=request.app.openapi_url, title="12345 接口文档",
                               swagger_js_url="/assets/swagger-ui-bundle.js", swagger_css_url="/assets/swagger-ui.css",
                               swagger_favicon_url="/assets/favicon.png")
    page.headers["Content-Security-Policy"] = DOCS_POLICY
    return page


@router.get("/redoc")
def redoc(request: Request) -> Response:
    page = get_redoc_html(openapi_url=request.app.openapi_url, title="12345 接口文档",
                          redoc_js_url="/assets/redoc.standalone.js", redoc_favicon_url="/assets/favicon.png",
                          with_google_fonts=False)
    page.headers["Content-Security-Policy"] = DOCS_POLICY
    return page


@router.get("/assets/{name}")
def asset(name: str) -> Response:
    path = ASSETS.get(name)
    if path is None:
        raise HTTPException(404, "no such asset")
    response = FileResponse(path, media_type=ASSET_TYPES[path.suffix])
    response.headers["Cache-Control"] = "public, max-age=3600"
    return protect(response) if path.suffix == ".svg" else response

