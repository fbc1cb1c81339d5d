"""Tortoise built-in migrations for the `models` app.

Regenerate after a model change:  .venv/bin/tortoise -c app.db.TORTOISE_ORM makemigrations
Apply:                            tenantry migrate

Work-around (tortoise-orm 1.1.9): on SQLite an atomic migration splits its DDL on every ';',
including one inside a table comment taken from a model's docstring, e.g. "... from `login`;
only its SHA-256 ...". SQLite keeps such comments only as text in sqlite_master, so we turn
';' into ',' in comments there. PostgreSQL escapes comments properly and is left alone.
"""

from __future__ import annotations

from tortoise.migrations.schema_editor.sqlite import SqliteSchemaEditor

if not getattr(SqliteSchemaEditor, "_tenantry_semicolon_fix", False):
    _original_table = SqliteSchemaEditor._get_escape_translation_table.__func__  # type: ignore[attr-defined]

    def _escape_table(cls: type[SqliteSchemaEditor]) -> list[str]:
        table = _original_table(cls)
        table[ord(";")] = ","
        return table

    SqliteSchemaEditor._get_escape_translation_table = classmethod(_escape_table)  # type: ignore[method-assign,assignment]
    SqliteSchemaEditor._tenantry_semicolon_fix = True  # type: ignore[attr-defined]
