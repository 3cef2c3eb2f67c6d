"""order embeddings for same-event detection (issue 13)

Each order's text embedding (float32, L2-normalised) per embedding model, written once, so a same-event search
embeds only the new complaint. Orders merged into a handling order use the existing parent_id with role "merged".

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 17:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('order_embeddings',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.String(length=128), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['work_orders.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('order_id', 'model_id', name='uq_order_embedding_model')
    )
    with op.batch_alter_table('order_embeddings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_order_embeddings_order_id'), ['order_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('order_embeddings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_order_embeddings_order_id'))
    op.drop_table('order_embeddings')
