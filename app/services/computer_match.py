"""One machine, one managed computer: how a computer a discovery rule registered and the same
computer reported by its agent are recognised as one (`app.services.ingestion` and
`app.services.discovery` both follow this rule).

A discovered computer is *unclaimed* while its uid is still the discovery's own
(`discovered:<address or distinguished name>`); an agent's report *claims* it by giving it the
agent's uid. A reported and a found computer of the same company match:

1. by hostname (compared case-insensitively) **and** an IP address in common, anywhere in the
   company; failing that,
2. by hostname alone, anywhere in the company (a key's location is only where new computers
   land; a rule scans for one location, an agent key may serve the whole company); failing that,
3. by an IP address in common, in the same location only (the key's location for a report, the
   rule's for a run): private ranges repeat from one site to another.

The first of these steps that finds any computer decides. It binds only when it finds exactly
one, and that computer is claimed by one record of the batch only: two or more (say an Active
Directory rule and a network scan both registered the machine) is ambiguous, and nothing is
guessed: the report becomes a new computer as before, and the discovered rows stay for a
person to sort out. A discovery run never registers a host that matches a claimed computer
(whatever the number of matches); it links the one it matches to the rule when none is linked.

A claimed computer keeps its row, its rule link and the location the rule registered it in; the
report writes the agent's data over it (hostname, OS, addresses, then the agent, jobs and
heartbeats of the batch), and from then on it is matched by uid like any reported computer.

Both sides run under the company's ingestion lock (`app.services.ingestion.lock_key`), so a
report and a run never interleave. The candidates are read in one statement whatever the
number of computers (no index serves the hostname or address conditions: the company's
computers are scanned, about 130 ms for 100,000 on PostgreSQL, only when a batch reports
computers new to the company or a run finds hosts it has not registered).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from tortoise.connection import get_connection

from app.db import connection_name
from app.models import ManagedComputer
from app.services.bulk_sql import numbered, on_postgres

PREFIX = "discovered:"
Row = dict[str, Any]


def name_key(hostname: str) -> str:
    return hostname.strip().lower()


class Matcher:
    """The candidates indexed by hostname and by address, so that matching many computers
    costs a few lookups each, not a pass over all candidates."""

    def __init__(self, rows: Iterable[Row]) -> None:
        self.by_name: dict[str, list[Row]] = defaultdict(list)
        self.by_address: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            if name_key(row["hostname"]):
                self.by_name[name_key(row["hostname"])].append(row)
            for address in set(row["ip_addresses"]):
                self.by_address[address].append(row)

    def deciding(self, hostname: str, addresses: Iterable[str], location_id: int) -> list[Row]:
        """The candidates at the first step of the rule that finds any (see above)."""
        mine = set(addresses)
        by_name = self.by_name.get(name_key(hostname), []) if name_key(hostname) else []
        both = [r for r in by_name if mine & set(r["ip_addresses"])]
        by_address: dict[int, Row] = {}
        for address in sorted(mine):
            for r in self.by_address.get(address, []):
                if r["location_id"] == location_id:
                    by_address[r["id"]] = r
        for step in (both, by_name, sorted(by_address.values(), key=lambda r: r["id"])):
            if step:
                return step
        return []


async def candidates(
    company_id: int,
    hostnames: Iterable[str],
    addresses: Iterable[str],
    fields: tuple[str, ...],
    *,
    claimed: bool,
) -> list[Row]:
    """The company's computers, claimed by an agent or still unclaimed, whose hostname is one
    of `hostnames` (case-insensitively) or that share an address with `addresses`: one
    statement (the lists travel as one array, or one JSON text on SQLite), values typed as
    the ORM types them."""
    names = sorted({name_key(h) for h in hostnames} - {""})
    ips = sorted(set(addresses))
    if not names and not ips:
        return []
    columns = ", ".join(f'"{f}"' for f in fields)
    claim = "<>" if claimed else "="
    if on_postgres():
        match = (
            'LOWER("hostname") = ANY(?::text[])'
            ' OR jsonb_exists_any("ip_addresses"::jsonb, ?::text[])'
        )
        params: list[Any] = [company_id, names, ips]
    else:
        match = (
            'LOWER("hostname") IN (SELECT value FROM json_each(?))'
            ' OR EXISTS (SELECT 1 FROM json_each("managed_computers"."ip_addresses") AS a'
            " WHERE a.value IN (SELECT value FROM json_each(?)))"
        )
        params = [company_id, json.dumps(names), json.dumps(ips)]
    sql = (
        f'SELECT {columns} FROM "managed_computers" WHERE "company_id" = ?'
        f""" AND substr("uid", 1, {len(PREFIX)}) {claim} '{PREFIX}' AND ({match})"""
        ' ORDER BY "id"'
    )
    rows = await get_connection(connection_name()).execute_query_dict(numbered(sql), params)
    types = ManagedComputer._meta.fields_map  # foreign key ids are not in it: plain integers
    return [
        {f: types[f].to_python_value(row[f]) if f in types else row[f] for f in fields}
        for row in rows
    ]


async def claims(
    company_id: int, location_id: int, reported: list[Row], fields: tuple[str, ...]
) -> dict[str, Row]:
    """Reported computers new to the company (not known by uid) that claim a computer a
    discovery registered: reported uid → the discovered row (`fields`). One SELECT when some
    are reported, none otherwise."""
    if not reported:
        return {}
    rows = await candidates(
        company_id,
        (r["hostname"] for r in reported),
        (a for r in reported for a in r["ip_addresses"]),
        fields,
        claimed=False,
    )
    if not rows:
        return {}
    matcher = Matcher(rows)
    chosen: dict[str, Row] = {}
    for r in reported:
        match = matcher.deciding(r["hostname"], r["ip_addresses"], location_id)
        if len(match) == 1:
            chosen[r["uid"]] = match[0]
    # A discovered computer two records of the batch would claim is ambiguous: neither does.
    times = Counter(row["id"] for row in chosen.values())
    return {uid: row for uid, row in chosen.items() if times[row["id"]] == 1}
