"""school settings: the school's name and its mail sender's name, set by an admin

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-06 04:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('school_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_name', sa.String(length=120), nullable=False),
    sa.Column('sender_name', sa.String(length=120), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.Integer(), nullable=True),
    sa.CheckConstraint('id = 1', name=op.f('ck_school_settings_single_row')),
    sa.ForeignKeyConstraint(['updated_by'], ['users.id'], name=op.f('fk_school_settings_updated_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_school_settings'))
    )


def downgrade():
    op.drop_table('school_settings')
