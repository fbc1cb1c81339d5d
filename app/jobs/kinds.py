"""Importing this module registers every job kind (see app.jobs.registry)."""
