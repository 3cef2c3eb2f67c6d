"""The one WeChat table: every delivery accepted (deduplicated), and for a text its filing until settled."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hotline.core.db import Base, UTCDateTime
from orders.models import utcnow


class WeChatMessage(Base):
    """Every delivery we accepted, keyed so a retry of the same message is recognised."""

    __tablename__ = "wechat_messages"
    __table_args__ = (Index("ix_wechat_filing_due", "filing", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    msg_type: Mapped[str] = mapped_column(String(16))
    order_no: Mapped[str | None] = mapped_column(String(32))
    lat: Mapped[float | None] = mapped_column(Float)      # location messages: GCJ-02 as WeChat sends them
    lng: Mapped[float | None] = mapped_column(Float)
    received_at: Mapped[object] = mapped_column(UTCDateTime(), default=utcnow)
    # A text or voice message's words, kept until the message is settled, and where its filing stands (FILING):
    # a filing that fails must leave the message recoverable, not only a traceback in the log (review H1).
    text: Mapped[str | None] = mapped_column(Text)
    filing: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(300))


# received: stored, with the assistant or being filed (the worker files it once overdue: its process died);
# pending: a direct filing failed, retried with backoff; failed: out of attempts, for staff to retry;
# relayed / filed / refused: settled, the text is dropped (the order, if any, holds it).
FILING = ("received", "pending", "failed", "relayed", "filed", "refused")


UNSETTLED = ("received", "pending", "failed")

