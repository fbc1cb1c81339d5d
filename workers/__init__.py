"""Dramatiq workers: the broker module, the actors and the scheduler (background work platform)."""
