"""Count the SQL statements Tortoise sends, on SQLite and PostgreSQL alike.

    with count_queries() as queries:
        await gql(...)
    assert queries.count == 4, queries.statements

Every Tortoise client (SQLite, asyncpg, and their transaction wrappers) logs each statement it
executes on the "tortoise.db_client" logger at DEBUG, once, before running it: counting those
records counts statements whichever connection object or transaction ran them. Connection
open/close messages are not statements and are skipped; transaction control (BEGIN, COMMIT,
savepoints) is not logged by Tortoise and so not counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

LOGGER = "tortoise.db_client"
_NOT_STATEMENTS = ("Created connection", "Closed connection")


class QueryCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not isinstance(record.msg, str):
            return
        if record.msg == "%s: %s" and record.args:
            # execute_query / execute_query_dict / execute_insert / execute_many
            sql = str(record.args[0])  # type: ignore[index]
        elif record.args:
            return  # some other debug message with arguments
        else:
            sql = record.msg  # execute_script logs the bare script
        if sql.startswith(_NOT_STATEMENTS):
            return
        self.statements.append(sql)

    @property
    def count(self) -> int:
        return len(self.statements)

    def matching(self, fragment: str) -> list[str]:
        """Statements that mention `fragment` (a table name, say), case-insensitively."""
        return [s for s in self.statements if fragment.lower() in s.lower()]

    def reset(self) -> None:
        self.statements.clear()

    def __str__(self) -> str:
        return f"{self.count} statements:\n" + "\n".join(
            f"  {i + 1}. {s}" for i, s in enumerate(self.statements)
        )


@contextmanager
def count_queries() -> Iterator[QueryCounter]:
    logger = logging.getLogger(LOGGER)
    counter = QueryCounter()
    saved_level, saved_disabled = logger.level, logger.disabled
    logger.setLevel(logging.DEBUG)
    logger.disabled = False
    logger.addHandler(counter)
    try:
        yield counter
    finally:
        logger.removeHandler(counter)
        logger.setLevel(saved_level)
        logger.disabled = saved_disabled


@contextmanager
def assert_max_queries(limit: int) -> Iterator[QueryCounter]:
    """Fail when the block sends more than `limit` statements (the list is in the message)."""
    with count_queries() as counter:
        yield counter
    assert counter.count <= limit, f"expected at most {limit}, got {counter}"
