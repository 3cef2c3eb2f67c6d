"""诉求类型 on each order (投诉/举报/咨询/求助/建议/表扬, read from its text by nlp.request_type; issue 14)

Orders stored before this revision get theirs here, read from their text in batches (the rule is data:
nlp/data/lexicons.yaml, so a later change of cue words applies to new orders only).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 21:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('work_orders') as batch:
        batch.add_column(sa.Column('request_type', sa.String(length=8), nullable=True))
    from nlp.request_type import request_type

    orders = sa.table('work_orders', sa.column('id', sa.Integer), sa.column('text', sa.Text),
                      sa.column('request_type', sa.String))
    connection = op.get_bind()
    last = 0
    while True:
        rows = connection.execute(sa.select(orders.c.id, orders.c.text).where(orders.c.id > last)
                                  .order_by(orders.c.id).limit(1000)).all()
        if not rows:
            break
        for order_id, text in rows:
            connection.execute(orders.update().where(orders.c.id == order_id)
                               .values(request_type=request_type(text or "")))
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table('work_orders') as batch:
        batch.drop_column('request_type')
