"""What the suites share around their measurements: where a suite's JSON results go, writing
them, and a suite's own command line (`python -m tests.bench.<suite> [--quick] [--keep]
[--out PATH]`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# run(quick, out, keep) → exit status
Runner = Callable[[bool, Path | None, bool], int]


def default_out(suite: str, quick: bool) -> Path:
    """bench-results/<suite>.json, or <suite>-quick.json for a quick run."""
    return ROOT / "bench-results" / (f"{suite}-quick.json" if quick else f"{suite}.json")


def write_results(out: Path, data: Any) -> None:
    """`data` as indented JSON (anything else as its str), its folder created if missing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def suite_main(
    run: Runner, description: str, quick_help: str, keep_help: str
) -> Callable[[list[str] | None], int]:
    """A suite module's `main(argv)`: parses --quick, --keep and --out, then runs it."""

    def main(argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(description=description)
        parser.add_argument("--quick", action="store_true", help=quick_help)
        parser.add_argument("--keep", action="store_true", help=keep_help)
        parser.add_argument("--out", type=Path, help="where to write the JSON results")
        args = parser.parse_args(argv)
        return run(args.quick, args.out, args.keep)

    return main
