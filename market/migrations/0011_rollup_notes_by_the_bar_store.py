"""Let the bar store note the roll-up spans of its own big appends, and the triggers skip them.

The statement trigger of migration 0004 groups the statement's whole transition table to find the
spans it changed: for a COPY of a million new bars that is a tenth of the write. The bar store
knows those spans already (its batch is sorted by series and time), so for a big append it sets
`cryptostock.rollup_noted` for the one COPY, inserts the same spans itself and clears the setting.
The trigger functions return at once while it is set. Every other writer is still noted by the
triggers; SQLite's triggers (no COPY there) are unchanged.
"""

import importlib

from django.db import migrations

rollup_triggers = importlib.import_module("market.migrations.0004_rollup_triggers")

NOTED_BY_WRITER = "cryptostock.rollup_noted"
SKIP_WHEN_NOTED = f"""
    IF current_setting('{NOTED_BY_WRITER}', true) = 'on' THEN
        RETURN NULL;  -- the writer noted these bars itself (market.barstore)
    END IF;"""


# 0004 installed one of these, by whether market_bar is a hypertable: function name -> definition
FUNCTIONS = {
    "market_bar_note_changes": rollup_triggers.POSTGRES_STATEMENT_TRIGGER,
    "market_bar_note_change": rollup_triggers.POSTGRES_ROW_TRIGGER,
}


def function_definition(name: str, with_skip: bool) -> str:
    function = FUNCTIONS[name].split("CREATE TRIGGER")[0].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
    return function.replace("BEGIN", "BEGIN" + SKIP_WHEN_NOTED, 1) if with_skip else function


def replace_functions(with_skip: bool):
    def replace(apps, schema_editor) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT proname FROM pg_proc WHERE proname = ANY(%s)", [list(FUNCTIONS)])
            installed = [name for (name,) in cursor.fetchall()]
        for name in installed:
            schema_editor.execute(function_definition(name, with_skip))

    return replace


class Migration(migrations.Migration):
    dependencies = [("market", "0010_admin_role_views_arbitrage")]

    operations = [migrations.RunPython(replace_functions(True), replace_functions(False), elidable=False)]
