"""voices: reference recordings' speaker embeddings, kept apart like face references

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 14:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('voice_references',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('encoding', sa.LargeBinary(), nullable=False),
    sa.Column('recording_sha256', sa.String(length=64), nullable=False),
    sa.Column('consent_record_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['consent_record_id'], ['consent_records.id'], name=op.f('fk_voice_references_consent_record_id_consent_records')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_voice_references_created_by_users')),
    sa.ForeignKeyConstraint(['person_id'], ['people.id'], name=op.f('fk_voice_references_person_id_people'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_voice_references')),
    sa.UniqueConstraint('person_id', 'recording_sha256', name='uq_voice_reference_recording')
    )
    with op.batch_alter_table('voice_references', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_voice_references_person_id'), ['person_id'], unique=False)


def downgrade():
    with op.batch_alter_table('voice_references', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voice_references_person_id'))
    op.drop_table('voice_references')
