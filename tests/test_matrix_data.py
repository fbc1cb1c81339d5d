"""The role matrix served by the API is the seeds' matrix, word for word.

The expected values are parsed from the seed documents themselves (`../shared/seeds/` beside
the repository), not from `app/authz/matrix.json`: a typo in the JSON, a dropped row or a
cell moved to the wrong role makes these tests fail.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest

from app.authz.matrix import MATRIX_FILE, MatrixError, parse
from app.authz.rules import RULES

REPO_ROOT = Path(__file__).resolve().parents[1]
SEEDS_DIR = REPO_ROOT.parent / "shared" / "seeds"

# Seed file prefix → the portal label `roleMatrix` reports for it.
SEED_PORTALS = {
    "004": "Reseller Portal",  # reseller roles, pipe table
    "003": "Client Portal",  # company roles, pipe table
    "002": "Department Portal",  # department roles, one cell per line
}

Triple = tuple[str, str, str]  # (role, functionality, access)


def _seed_text(prefix: str) -> str:
    if not SEEDS_DIR.is_dir():
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI must provide the seeds at {SEEDS_DIR} (../shared beside the clone)")
        pytest.skip(
            f"the seed documents are not here ({SEEDS_DIR}): clone ../shared beside the repo"
        )
    files = sorted(SEEDS_DIR.glob(f"{prefix}_*.txt"))
    assert len(files) == 1, (
        f"expected exactly one seed {prefix}_*.txt in {SEEDS_DIR}, found {files}"
    )
    return files[0].read_text(encoding="utf-8")


def parse_pipe_table(text: str) -> set[Triple]:
    """Seeds 003 and 004: a Markdown-like table `Functionality | Role | ... |`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Functionality |"))

    def cells(line: str) -> list[str]:
        parts = [c.strip() for c in line.split("|")]
        if parts and parts[-1] == "":
            parts = parts[:-1]  # the trailing "|"
        return parts

    roles = cells(lines[start])[1:]
    assert re.fullmatch(r"[-|]+", lines[start + 1]), "the header separator line"
    triples: set[Triple] = set()
    rows = 0
    for line in lines[start + 2 :]:
        if "|" not in line:
            break
        row = cells(line)
        assert len(row) == len(roles) + 1, f"row with {len(row)} cells: {line!r}"
        rows += 1
        for role, access in zip(roles, row[1:], strict=True):
            triples.add((role, row[0], access))
    assert rows >= 10, "the table was cut short"
    assert len(triples) == rows * len(roles)
    return triples


ACCESS_RE = re.compile(r"(Full|Read|N/A)\*?( \(.+\))?|Only .+")


def parse_line_table(text: str) -> set[Triple]:
    """Seed 002: after 'The following table describes...', a line "Functionality", then one
    non-empty line per header cell (the role names), then per row one line for the
    functionality and one per role, up to the footnote line starting with '*'."""
    lines = [line.strip() for line in text.splitlines()]
    intro = next(i for i, line in enumerate(lines) if line.startswith("The following table"))
    start = next(i for i in range(intro, len(lines)) if lines[i] == "Functionality")
    tokens: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("*"):
            break
        if line:
            tokens.append(line)
    # The header ends just before the first row's label, i.e. two tokens before the first cell.
    first_cell = next(i for i, t in enumerate(tokens) if ACCESS_RE.fullmatch(t))
    roles = tokens[: first_cell - 1]
    assert len(roles) >= 2, roles
    width = len(roles) + 1
    body = tokens[len(roles) :]
    assert len(body) % width == 0, f"{len(body)} body cells do not make rows of {width}"
    triples: set[Triple] = set()
    for r in range(0, len(body), width):
        label, *values = body[r : r + width]
        assert not ACCESS_RE.fullmatch(label), (
            f"a cell where a functionality was expected: {label!r}"
        )
        for role, access in zip(roles, values, strict=True):
            assert ACCESS_RE.fullmatch(access), f"{label}/{role}: unexpected cell {access!r}"
            triples.add((role, label, access))
    return triples


def test_line_table_parser_on_a_small_sample() -> None:
    sample = "\n".join(
        [
            "The following table describes what functionality is available.",
            "",
            "Functionality",
            "",
            "Owner",
            "",
            "User",
            "",
            "Configuration tasks (a, b)",
            "",
            "Full",
            "",
            "N/A",
            "",
            "Summary",
            "Read",
            "Read*",
            "",
            "* Limited to something.",
            "Trailing text",
        ]
    )
    assert parse_line_table(sample) == {
        ("Owner", "Configuration tasks (a, b)", "Full"),
        ("User", "Configuration tasks (a, b)", "N/A"),
        ("Owner", "Summary", "Read"),
        ("User", "Summary", "Read*"),
    }


def expected_from_seeds() -> dict[str, set[Triple]]:
    return {
        "Reseller Portal": parse_pipe_table(_seed_text("004")),
        "Client Portal": parse_pipe_table(_seed_text("003")),
        "Department Portal": parse_line_table(_seed_text("002")),
    }


async def test_role_matrix_is_the_seeds_word_for_word(gql) -> None:
    expected = expected_from_seeds()
    # Sizes straight from the seeds: 5 roles × 19 rows, 6 × 16, 5 × 11.
    assert {k: len(v) for k, v in expected.items()} == {
        "Reseller Portal": 95,
        "Client Portal": 96,
        "Department Portal": 55,
    }
    body = await gql("{ roleMatrix { portal role functionality access } }")  # no token: public
    assert "errors" not in body, body
    served: dict[str, set[Triple]] = {}
    entries = body["data"]["roleMatrix"]
    for e in entries:
        served.setdefault(e["portal"], set()).add((e["role"], e["functionality"], e["access"]))
    assert len(entries) == sum(len(v) for v in served.values()), "duplicate entries"
    assert set(served) == set(expected)
    for portal, triples in expected.items():
        missing = sorted(triples - served[portal])
        extra = sorted(served[portal] - triples)
        assert (missing, extra) == ([], []), f"{portal}: missing {missing}, not in the seed {extra}"


# --- the loader refuses a broken file -----------------------------------------------------


def _data() -> dict:
    return copy.deepcopy(json.loads(MATRIX_FILE.read_text(encoding="utf-8")))


def _client(data: dict) -> dict:
    return next(p for p in data["portals"] if p["key"] == "CLIENT")


def test_the_shipped_file_parses() -> None:
    parse(_data(), frozenset(RULES))


def test_unknown_cell_text_is_refused() -> None:
    data = _data()
    row = _client(data)["rows"][0]
    role = next(iter(row["cells"]))
    row["cells"][role] = "Full (sometimes)"
    with pytest.raises(MatrixError, match="unknown cell text"):
        parse(data, frozenset(RULES))


def test_a_row_missing_a_role_is_refused() -> None:
    data = _data()
    row = _client(data)["rows"][0]
    del row["cells"][next(iter(row["cells"]))]
    with pytest.raises(MatrixError, match="every role"):
        parse(data, frozenset(RULES))


def test_an_unregistered_rule_is_refused() -> None:
    data = _data()
    data["cells"]["Full (except for creation and removal)"]["rule"] = "no_such_rule"
    with pytest.raises(MatrixError, match="not registered"):
        parse(data, frozenset(RULES))


def test_a_rule_missing_from_the_registry_is_refused() -> None:
    with pytest.raises(MatrixError, match="not registered"):
        parse(_data(), frozenset(RULES) - {"only_portal_users"})


def test_two_primary_roles_are_refused() -> None:
    data = _data()
    roles = _client(data)["roles"]
    second = next(r for r in roles if not r.get("primary"))
    second["primary"] = True
    with pytest.raises(MatrixError, match="exactly one primary"):
        parse(data, frozenset(RULES))


def test_no_primary_role_is_refused() -> None:
    data = _data()
    for r in _client(data)["roles"]:
        r["primary"] = False
    with pytest.raises(MatrixError, match="exactly one primary"):
        parse(data, frozenset(RULES))


def test_an_unknown_action_is_refused() -> None:
    data = _data()
    data["cells"]["Read"]["actions"] = ["READ", "EXPORT"]
    with pytest.raises(MatrixError, match="cell 'Read'"):
        parse(data, frozenset(RULES))
