"""The Rasa assistant's custom-action webhook, hosted in the app with rasa_sdk's ActionExecutor.

Rasa (its own process, see assistant/) posts every custom-action call here — `action_endpoint` in endpoints.yml.
The view tells the actions where the service is and which key to use (an ActionContext: settings.service_url, the
app's assistant API key, settings.assistant_timeout_s); the actions then call the service over HTTP like any other
client, so they never bypass its permissions. They are async: a synchronous call back into this single-worker app
would deadlock.

The webhook is reachable wherever the app is, and an action call carries the conversation's metadata (the OpenID
behind "my orders"), so a forged call could read someone else's orders. Calls must therefore carry the webhook
token, `?token=<webhook_token(key)>` — what Rasa sends when endpoints.yml has `action_endpoint: {url: …, token: …}`.
The token is derived from the assistant's API key, so whoever starts Rasa can compute it and nobody has to store
another secret.
"""
from __future__ import annotations

import hmac
import json
import logging
import zlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import ActionExecutionRejection, ActionMissingDomainException, ActionNotFoundException

from assistant.actions.context import ActionContext, use_context
from hotline.core.secrets import webhook_token

log = logging.getLogger("hotline.assistant")

router = APIRouter(tags=["assistant"])
ACTIONS_PACKAGE = "assistant.actions"
MAX_BODY_BYTES = 4 * 1024 * 1024      # a long conversation's tracker is large, but not this large


def _register_actions() -> ActionExecutor:
    # At import, i.e. when the app is created: an action module that fails to import stops the start-up with its
    # error, not a conversation later.
    created = ActionExecutor()
    created.register_package(ACTIONS_PACKAGE)
    return created


_executor = _register_actions()


def executor() -> ActionExecutor:
    """The actions of assistant.actions, registered once per process."""
    return _executor


def action_context(request: Request) -> ActionContext:
    settings = request.app.state.settings
    return ActionContext(base_url=settings.service_url, api_key=request.app.state.assistant_api_key,
                         timeout_s=settings.assistant_timeout_s, city_name=settings.city_name)


async def _action_call(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(413, "action call too large")
    if request.headers.get("content-encoding", "").lower() in ("deflate", "gzip"):
        # RASA_COMPRESS_ACTION_SERVER_REQUEST=true makes Rasa compress the call.
        inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)
        try:
            body = inflater.decompress(body, MAX_BODY_BYTES)
        except zlib.error:
            raise HTTPException(400, "the body is not valid compressed data") from None
        if inflater.unconsumed_tail:
            raise HTTPException(413, "action call too large")
    try:
        call = json.loads(body)
    except ValueError:
        raise HTTPException(400, "the body is not JSON") from None
    except RecursionError:   # not a ValueError: depth ≥ ~1,000 (review 2026-12-06, L3)
        raise HTTPException(400, "the body is not JSON: nested too deeply") from None
    if not isinstance(call, dict) or not isinstance(call.get("tracker"), dict) or not call.get("next_action"):
        raise HTTPException(400, "an action call needs next_action and tracker")
    return call


def rasa_caller(request: Request, token: Annotated[str | None, Query(max_length=128)] = None) -> None:
    """Dependency: the call carries the webhook token (compared in constant time)."""
    api_key = request.app.state.assistant_api_key
    if not api_key:
        raise HTTPException(503, "the assistant's API key is not provisioned yet")
    if token is None or not hmac.compare_digest(token.encode(), webhook_token(api_key).encode()):
        raise HTTPException(401, "missing or wrong webhook token")


@router.post("/api/v1/assistant/webhook", dependencies=[Depends(rasa_caller)])
async def run_action(request: Request) -> JSONResponse:
    """Run one custom action for Rasa: {events, responses}. 404 unknown action, 400 rejected (a form's validation),
    449 domain missing — the status codes rasa_sdk's own action server uses, which Rasa understands."""
    call = await _action_call(request)
    with use_context(action_context(request)):
        try:
            result = await executor().run(call)
        except ActionExecutionRejection as exc:
            return JSONResponse({"error": exc.message, "action_name": exc.action_name}, status_code=400)
        except ActionNotFoundException as exc:
            return JSONResponse({"error": exc.message, "action_name": exc.action_name}, status_code=404)
        except ActionMissingDomainException as exc:
            return JSONResponse({"error": exc.message, "action_name": exc.action_name}, status_code=449)
        except Exception as exc:
            # A bug in an action must not become a stack trace in the chat: Rasa reports a failed action instead.
            log.exception("custom action %s failed", call.get("next_action"))
            return JSONResponse({"error": type(exc).__name__, "action_name": call.get("next_action")},
                                status_code=500)
    return JSONResponse(result.model_dump() if result else {"events": [], "responses": []})
