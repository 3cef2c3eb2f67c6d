"""Call-back tasks (转人工 → 回电): the channel systems (the assistant) file them for a citizen, the centre's staff
work them. Thin views; the rules (due time, one task per citizen, masking) are in orders/callbacks.py."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field

from api.auth.models import AuditRecord
from api.deps import ClientDep, OrdersReader, OrdersWriter, Principal, SessionsDep
from api.schemas import RowId
from hotline.core.clock import utcnow
from hotline.core.db import transaction
from orders import roles
from orders.callbacks import (
    CHANNELS,
    CallbackConflict,
    CallbackInvalid,
    CallbackNotFound,
    callback_row,
    close_callback,
    open_callbacks,
    request_callback,
    take_callback,
)

router = APIRouter(prefix="/api/v1", tags=["callbacks"])

# Generous on input (the service keeps the last turns, each cut to 500 characters); the body limit bounds the rest.
TURNS_ACCEPTED, TURN_CHARS_ACCEPTED = 200, 5000


class Turn(BaseModel):
    who: Literal["citizen", "assistant"]
    text: str = Field(max_length=TURN_CHARS_ACCEPTED)
    at: str | None = Field(default=None, max_length=40, description="when it was said (ISO 8601), if known")


class CallbackIn(BaseModel):
    channel: Literal[CHANNELS] = Field(description="where the citizen asked: web or wechat")   # type: ignore[valid-type]
    contact: str = Field(min_length=1, max_length=128,
                         description="the channel's user id (the web session's or WeChat OpenID), one task per contact")
    phone: str | None = Field(default=None, max_length=32, description="the number to call back")
    reason: str | None = Field(default=None, max_length=2000)
    conversation: list[Turn] = Field(default_factory=list, max_length=TURNS_ACCEPTED)
    order_no: str | None = Field(default=None, max_length=32, description="the order the citizen asked about")


class CloseIn(BaseModel):
    note: str | None = Field(default=None, max_length=2000, description="what was said or done in the call")
    order_no: str | None = Field(default=None, max_length=32, description="the order filed or looked at in the call")


@contextmanager
def callback_errors():
    try:
        yield
    except CallbackNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except CallbackConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except CallbackInvalid as exc:
        raise HTTPException(422, str(exc)) from None


def _centre_staff(principal: Principal) -> None:
    """People of the 12345 centre call citizens back; a department or a machine client does not."""
    if principal.kind != "staff" or not roles.in_centre(principal.role):
        raise HTTPException(403, "call-back tasks are worked by the centre's agents, dispatchers, supervisors, admins")


@router.post("/callbacks", status_code=201)
def post_callback(body: CallbackIn, response: Response, key: OrdersWriter, sessions: SessionsDep) -> dict:
    """A citizen asked for a person in the chat: file a call-back task (201), or return their open one (200).
    For channel systems that relay citizens (the assistant's key); the answer says when a person will call."""
    if key.kind != "key" or key.role != "system":
        raise HTTPException(403, "only the channel systems (the assistant) relay a citizen's call-back request")
    with callback_errors(), transaction(sessions) as session:
        task, created = request_callback(
            session, channel=body.channel, contact=body.contact, phone=body.phone, reason=body.reason,
            conversation=[turn.model_dump() for turn in body.conversation], order_no=body.order_no, now=utcnow())
        if not created:
            response.status_code = 200
        row = callback_row(task)
    # The citizen's side needs no one else's details: when, and whether a number is on file.
    return {"id": row["id"], "status": row["status"], "status_label": row["status_label"], "due_at": row["due_at"],
            "created": created, "has_phone": row["phone"] is not None, "order_no": row["order_no"]}


@router.get("/callbacks")
def list_callbacks(principal: OrdersReader, sessions: SessionsDep,
                   limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[dict]:
    """Open and taken call-back tasks, the earliest due first: phone masked, conversation masked."""
    _centre_staff(principal)
    with sessions() as session:
        return open_callbacks(session, limit)


@router.post("/callbacks/{callback_id}/take")
def take(callback_id: RowId, principal: OrdersWriter, sessions: SessionsDep, client: ClientDep) -> dict:
    """The agent takes the task: the answer holds the whole phone number, for this agent (the reveal is audited)."""
    _centre_staff(principal)
    with callback_errors(), transaction(sessions) as session:
        task = take_callback(session, id=callback_id, actor=principal.name)
        session.add(AuditRecord(actor=principal.name[:64], action="callback_take", client=client,
                                detail={"callback_id": task.id}))
        return callback_row(task) | {"phone": task.phone}


@router.post("/callbacks/{callback_id}/close")
def close(callback_id: RowId, body: CloseIn, principal: OrdersWriter, sessions: SessionsDep) -> dict:
    """The call is made: done, with a note and the order filed or looked at in the call, if any."""
    _centre_staff(principal)
    with callback_errors(), transaction(sessions) as session:
        task = close_callback(session, id=callback_id, actor=principal.name, note=body.note, order_no=body.order_no)
        return callback_row(task)
