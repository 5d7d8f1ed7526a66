"""job leases: the run holding an analysis, publication or export, and until when

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 04:50:00

"""
from datetime import UTC, datetime, timedelta

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

TABLES = {'media': ('status', 'analysing'), 'publications': ('state', 'publishing'),
          'subject_exports': ('status', 'building')}
# A run an older worker may still be doing keeps the old stale limit before it is taken back.
OLD_STALE_LIMIT = timedelta(minutes=30)


def upgrade():
    for table in TABLES:
        op.add_column(table, sa.Column('lease_owner', sa.String(length=32), nullable=True))
        op.add_column(table, sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))
    until = datetime.now(UTC) + OLD_STALE_LIMIT
    if op.get_bind().dialect.name == 'sqlite':
        until = until.replace(tzinfo=None)  # stored as naive UTC, as the models do
    for table, (column, claimed) in TABLES.items():
        rows = sa.table(table, sa.column(column), sa.column('lease_expires_at'))
        op.execute(rows.update().where(rows.c[column] == claimed).values(lease_expires_at=until))


def downgrade():
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('lease_expires_at')
            batch_op.drop_column('lease_owner')
