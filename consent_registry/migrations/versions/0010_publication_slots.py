"""publication slots and idempotency keys: an item is published once per channel unless asked again

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-06 04:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('publication_slots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('media_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('publication_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['media_id'], ['media.id'], name=op.f('fk_publication_slots_media_id_media')),
    sa.ForeignKeyConstraint(['publication_id'], ['publications.id'], name=op.f('fk_publication_slots_publication_id_publications'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_publication_slots')),
    sa.UniqueConstraint('media_id', 'channel', 'number', name='uq_publication_slot')
    )
    with op.batch_alter_table('publication_slots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_publication_slots_publication_id'), ['publication_id'], unique=False)
    op.create_table('idempotency_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('publication_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['publication_id'], ['publications.id'], name=op.f('fk_idempotency_keys_publication_id_publications'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_idempotency_keys_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_keys')),
    sa.UniqueConstraint('user_id', 'key', name='uq_idempotency_key')
    )
    # Slots of publications already queued or live: the first per item and channel holds number 0,
    # any later one (published twice before this migration) the next numbers.
    op.execute("""
        INSERT INTO publication_slots (media_id, channel, number, publication_id)
        SELECT media_id, channel,
               ROW_NUMBER() OVER (PARTITION BY media_id, channel ORDER BY publication_id) - 1,
               publication_id
        FROM (
            SELECT p.media_id AS media_id, p.channel AS channel, p.id AS publication_id
            FROM publications p
            WHERE p.media_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM publication_media m WHERE m.publication_id = p.id)
              AND p.state IN ('queued', 'publishing', 'live', 'takedown_pending')
            UNION
            SELECT m.media_id, p.channel, p.id
            FROM publication_media m JOIN publications p ON p.id = m.publication_id
            WHERE m.media_id IS NOT NULL
              AND p.state IN ('queued', 'publishing', 'live', 'takedown_pending')
        ) active
    """)


def downgrade():
    op.drop_table('idempotency_keys')
    with op.batch_alter_table('publication_slots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_publication_slots_publication_id'))
    op.drop_table('publication_slots')
