"""The benchmark is run by `python -m tests.bench.run`, never collected by pytest."""

from __future__ import annotations

collect_ignore_glob = ["*"]
