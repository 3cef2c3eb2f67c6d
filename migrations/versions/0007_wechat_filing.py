"""wechat messages: the text kept until settled, and the state of its filing (retries, staff list)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('wechat_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('text', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('filing', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.String(length=300), nullable=True))
        batch_op.create_index('ix_wechat_filing_due', ['filing', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('wechat_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_wechat_filing_due')
        batch_op.drop_column('last_error')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
        batch_op.drop_column('filing')
        batch_op.drop_column('text')
