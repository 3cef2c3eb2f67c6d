"""Tables of the work-order service: orders, their event trail, routing decisions, supervision, and the department
webhooks' outbox and inbound status callbacks (orders/outbox.py works them)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hotline.core.clock import utcnow  # noqa: F401  (the order code imports it from here too)
from hotline.core.db import Base, UTCDateTime

# role of a caller's order merged into the handling order of the same event (orders/merge.py)
MERGED_ROLE = "merged"


class WorkOrder(Base):
    __tablename__ = "work_orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_no: Mapped[str | None] = mapped_column(String(32), unique=True, index=True)
    channel: Mapped[str] = mapped_column(String(16))                   # hotline / wechat / web / open311 / grid …
    state: Mapped[str] = mapped_column(String(16), index=True)
    text: Mapped[str] = mapped_column(Text)                            # as received (access-controlled)
    text_masked: Mapped[str] = mapped_column(Text)                     # phones/ID numbers masked: for analytics
    caller_phone: Mapped[str | None] = mapped_column(String(32))       # for the handler's call-back only
    caller_phone_last4: Mapped[str | None] = mapped_column(String(4))  # status lookup: order number + last 4
    caller_openid: Mapped[str | None] = mapped_column(String(64), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))      # same key with another body → refused

    lat: Mapped[float | None] = mapped_column(Float)                   # WGS-84
    lng: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(Text)                  # 标准地址
    district_adcode: Mapped[str | None] = mapped_column(String(12), index=True)
    street_id: Mapped[str | None] = mapped_column(String(12), index=True)
    community: Mapped[str | None] = mapped_column(String(64))

    kb_item_id: Mapped[str | None] = mapped_column(String(32))
    category_code: Mapped[str | None] = mapped_column(String(6), index=True)
    category_path: Mapped[str | None] = mapped_column(String(128))
    department_code: Mapped[str | None] = mapped_column(String(32), index=True)   # the unit holding it now
    handler: Mapped[str | None] = mapped_column(String(64))
    urgency: Mapped[str] = mapped_column(String(8), default="非紧急")
    request_type: Mapped[str | None] = mapped_column(String(8))   # 诉求类型: 投诉/举报/咨询/求助/建议/表扬 (nlp)
    tags: Mapped[list] = mapped_column(JSON, default=list)
    sentiment: Mapped[float | None] = mapped_column(Float)

    time_limit_days: Mapped[int | None] = mapped_column(Integer)
    deadline_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    first_dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    satisfaction: Mapped[str | None] = mapped_column(String(8))
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    return_count: Mapped[int] = mapped_column(Integer, default=0)

    parent_id: Mapped[int | None] = mapped_column(ForeignKey("work_orders.id"), index=True)
    # lead (牵头) / co (协办) on co-handling orders; merged (合并) on a caller's order merged into a handling order
    role: Mapped[str | None] = mapped_column(String(8))

    # Optimistic locking: an UPDATE that raced another one matches no row and fails (StaleDataError).
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    __mapper_args__ = {"version_id_col": version}

    events: Mapped[list[OrderEvent]] = relationship(back_populates="order", order_by="OrderEvent.seq",
                                                    cascade="all, delete-orphan")
    children: Mapped[list[WorkOrder]] = relationship(back_populates="parent")
    parent: Mapped[WorkOrder | None] = relationship(back_populates="children", remote_side=[id])


class OrderEvent(Base):
    """Every step of an order: who, when, what, why. Append-only."""

    __tablename__ = "order_events"
    __table_args__ = (UniqueConstraint("order_id", "seq", name="uq_order_event_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("work_orders.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    actor_role: Mapped[str] = mapped_column(String(16))
    department_code: Mapped[str | None] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)

    order: Mapped[WorkOrder] = relationship(back_populates="events")


class OrderEmbedding(Base):
    """An order's text embedding, stored once (at intake, or the first time a same-event search meets the order),
    so a search embeds only the new complaint. One row per order and embedding model: a new model adds its own."""

    __tablename__ = "order_embeddings"
    __table_args__ = (UniqueConstraint("order_id", "model_id", name="uq_order_embedding_model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("work_orders.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str] = mapped_column(String(128))
    vector: Mapped[bytes] = mapped_column(LargeBinary)                 # float32, L2-normalised, little-endian
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RoutingDecision(Base):
    """What the router proposed for an order, and — once the department signs or returns — whether it was right."""

    __tablename__ = "routing_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("work_orders.id"), index=True)
    decided_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decision: Mapped[str] = mapped_column(String(8))                   # auto / suggest / review
    confidence: Mapped[float] = mapped_column(Float)
    department_code: Mapped[str | None] = mapped_column(String(32))
    kb_item_id: Mapped[str | None] = mapped_column(String(32))
    candidates: Mapped[list] = mapped_column(JSON, default=list)
    model: Mapped[str | None] = mapped_column(String(256))
    correct: Mapped[bool | None] = mapped_column(Boolean)              # None until the department answers
    final_department_code: Mapped[str | None] = mapped_column(String(32))
    # The router's reasons as the agent saw them (explanation, decision reasons, the top candidate's matched example
    # and boundary, jurisdiction and place question, tags, urgency, diversion, other matters): kept with the order so
    # the order's page still shows why, after intake.
    explanation: Mapped[dict | None] = mapped_column(JSON)


class Supervision(Base):
    """督办: a supervisor's follow-up on an open order."""

    __tablename__ = "supervisions"
    __table_args__ = (Index("ix_supervision_open", "order_id", "closed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("work_orders.id"))
    supervision_type: Mapped[str] = mapped_column(String(8))           # 系统/书面/联合/专项督办
    leader_flag: Mapped[bool] = mapped_column(Boolean, default=False)  # 领导督办件
    note: Mapped[str | None] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


# -- department systems: webhooks out (the outbox), status callbacks in --------------------------------------
class DepartmentEndpoint(Base):
    """Where a department's own system wants to hear about its orders."""

    __tablename__ = "department_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    department_code: Mapped[str] = mapped_column(String(32), unique=True)
    url: Mapped[str] = mapped_column(String(512))
    secret: Mapped[str] = mapped_column(String(128))      # HMAC key for the signature header (shown once)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OutboxMessage(Base):
    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_due", "delivered_at", "dead_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(36), unique=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("department_endpoints.id"))
    topic: Mapped[str] = mapped_column(String(32))         # order.dispatched / order.status_changed / order.withdrawn
    order_no: Mapped[str] = mapped_column(String(32), index=True)
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    dead_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())   # gave up after the last attempt
    last_error: Mapped[str | None] = mapped_column(Text)


class InboundCallback(Base):
    """A department system's status report, remembered by its own event id so a retry is applied once."""

    __tablename__ = "inbound_callbacks"
    __table_args__ = (UniqueConstraint("source", "event_id", name="uq_inbound_callback"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))        # the API key's name
    event_id: Mapped[str] = mapped_column(String(128))
    order_no: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


# -- citizens asking for a person (转人工), and files attached to a step -------------------------------------------
class CallbackRequest(Base):
    """A citizen in the chat (web or WeChat) asked for a person: a call-back task in the agents' workbench, with the
    conversation so far (masked) and the time we promised to call back."""

    __tablename__ = "callback_requests"
    __table_args__ = (Index("ix_callback_open", "status", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))                   # web / wechat
    contact: Mapped[str] = mapped_column(String(128))                  # the channel's user id (cookie session, OpenID)
    phone: Mapped[str | None] = mapped_column(String(32))              # for the call back (shown masked in lists)
    reason: Mapped[str | None] = mapped_column(Text)
    conversation: Mapped[list] = mapped_column(JSON, default=list)     # [{"who": "citizen"|"assistant", "text", "at"}]
    order_no: Mapped[str | None] = mapped_column(String(32))           # the order it is about, if any
    status: Mapped[str] = mapped_column(String(8), default="open")     # open / taken / done
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    taken_by: Mapped[str | None] = mapped_column(String(64))
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text)


class Attachment(Base):
    """A photo or file a handler attached to a step (办结 with photos of the result): the bytes live outside the
    database (state_dir/attachments/<storage_key>), checked for size and type on upload."""

    __tablename__ = "order_attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("work_orders.id", ondelete="CASCADE"), index=True)
    event_seq: Mapped[int | None] = mapped_column(Integer)             # the step it belongs to
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(128), unique=True)
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Report(Base):
    """An archived 日报/周报/月报/季报 (orders/reports): the files live in state_dir/reports/<period>-<start>.<ext>;
    one row per period and first day, replaced when the same period is generated again."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("period", "start", name="uq_reports_period_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    period: Mapped[str] = mapped_column(String(8))                     # day / week / month / quarter
    start: Mapped[dt.date] = mapped_column(Date)                       # first day, the city's calendar
    end: Mapped[dt.date] = mapped_column(Date)                         # the day after the last
    formats: Mapped[list] = mapped_column(JSON, default=list)          # ["html", "pdf", "xlsx"]
    sizes: Mapped[dict] = mapped_column(JSON, default=dict)            # {"pdf": bytes, …}
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))                # a username, a key's name, or "schedule"
