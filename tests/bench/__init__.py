"""The foundation benchmark (`make bench` → `python -m tests.bench.run`). Not a test suite."""
