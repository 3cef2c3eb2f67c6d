"""city vitals (城市体征): time-series points and their thresholds

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 16:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('vital_points',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('domain', sa.String(length=8), nullable=False),
    sa.Column('area', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('source', sa.String(length=256), nullable=True),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('metric', 'area', 'at', name='uq_vital_point')
    )
    with op.batch_alter_table('vital_points', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vital_points_metric'), ['metric'], unique=False)

    op.create_table('vital_thresholds',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('area', sa.String(length=64), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('warn', sa.Float(), nullable=True),
    sa.Column('alarm', sa.Float(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('metric', 'area', 'direction', name='uq_vital_threshold')
    )
    with op.batch_alter_table('vital_thresholds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vital_thresholds_metric'), ['metric'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('vital_thresholds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vital_thresholds_metric'))
    op.drop_table('vital_thresholds')
    with op.batch_alter_table('vital_points', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vital_points_metric'))
    op.drop_table('vital_points')
