"""work orders: idempotency keys scoped to their sender (review 2026-12-06, L12)

The column and its unique constraint stay; what it holds changes. It held the client's Idempotency-Key as sent,
global across clients (another client's equal key replayed someone else's order). It now holds
sha256(scope NUL key), the scope being who sent the key: "key:<API key name>", "staff:<username>" or
"channel:wechat" (orders.service.scoped_idempotency_key). The keys already stored are rewritten in their sender's
scope, read from the order's create event, so a retry that spans the upgrade still finds its order:
  * a WeChat message's key (msg:… / evt:…) on a WeChat order filed by the WeChat relay or the assistant → the channel;
  * otherwise an API key's name (actor role "system") → "key:", a staff member → "staff:".
(Department-bound keys, role "handler", may no longer file orders, so how theirs are scoped does not matter.)

Downgrade leaves the hashed keys as they are: the older code treats them as opaque keys it will never be sent again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 14:00:00
"""
import hashlib

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

WECHAT_SCOPE = "channel:wechat"   # frozen copies of orders.service's, as of this revision


def _scoped(scope: str, key: str) -> str:
    return hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()


def _scope(key: str, channel: str | None, actor: str | None, role: str | None) -> str:
    if channel == "wechat" and key.startswith(("msg:", "evt:")) and actor in ("wechat", "assistant"):
        return WECHAT_SCOPE
    return f"key:{actor}" if role in ("system", None) else f"staff:{actor}"


def upgrade() -> None:
    if op.get_context().as_sql:   # offline SQL: the rewrite needs the rows (run `hotline db upgrade` online)
        return
    orders = sa.table('work_orders', sa.column('id', sa.Integer), sa.column('idempotency_key', sa.String),
                      sa.column('channel', sa.String))
    events = sa.table('order_events', sa.column('order_id', sa.Integer), sa.column('seq', sa.Integer),
                      sa.column('actor', sa.String), sa.column('actor_role', sa.String))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(orders.c.id, orders.c.idempotency_key, orders.c.channel, events.c.actor, events.c.actor_role)
        .select_from(orders.outerjoin(events, sa.and_(events.c.order_id == orders.c.id, events.c.seq == 1)))
        .where(orders.c.idempotency_key.is_not(None))
    ).all()
    for order_id, key, channel, actor, role in rows:
        bind.execute(orders.update().where(orders.c.id == order_id)
                     .values(idempotency_key=_scoped(_scope(key, channel, actor, role), key)))


def downgrade() -> None:
    pass
