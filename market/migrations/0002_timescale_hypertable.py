"""Turn the bar table into a TimescaleDB hypertable, where the extension can be had.

Guarded: on SQLite, or on a PostgreSQL server without the `timescaledb` extension available, this
migration does nothing, and bars live in a plain table (everything works, only without Timescale's
chunking and compression). A hypertable needs the time column in every unique index, so the
primary key becomes (id, time); the (instrument, timeframe, time) unique index already has it.
"""

from django.db import migrations

CHUNK_INTERVAL = "7 days"


def timescale_available(schema_editor) -> bool:
    if schema_editor.connection.vendor != "postgresql":
        return False
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        return cursor.fetchone() is not None


def make_hypertable(apps, schema_editor) -> None:
    if not timescale_available(schema_editor):
        return
    table = apps.get_model("market", "Bar")._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT IF EXISTS "{table}_pkey"')
        cursor.execute(f'ALTER TABLE "{table}" ADD PRIMARY KEY (id, "time")')
        cursor.execute(
            "SELECT create_hypertable(%s, 'time', chunk_time_interval => %s::interval, migrate_data => true,"
            " if_not_exists => true)",
            [table, CHUNK_INTERVAL],
        )


class Migration(migrations.Migration):
    dependencies = [("market", "0001_initial")]

    operations = [migrations.RunPython(make_hypertable, migrations.RunPython.noop, elidable=False)]
