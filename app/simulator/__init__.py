"""A simulated fleet of managed computers, backup servers, jobs and months of sessions: the
demo data (`make run`) and the benchmarks' data come from the same deterministic generator
(`fleet.generate`), written either through ingestion or straight into the tables
(`loader.load_fleet`)."""
