"""Scheduler state: the ticks fired (one row per schedule and tick, the single-firing
guarantee) and the leader lease (so a passive scheduler does not even try)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class ScheduledTick(Model):
    """One fired tick of a schedule, written before its work is done.

    A scheduler fires a tick only when its INSERT of this row succeeds: the UNIQUE (name, tick)
    constraint lets one scheduler win, on SQLite and PostgreSQL alike."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100)
    tick = fields.DatetimeField()
    fired_at = fields.DatetimeField()
    fired_by = fields.CharField(max_length=200)
    # The job the tick enqueued (job schedules), and why the tick's work failed, if it did.
    job_id = fields.IntField(null=True)
    error = fields.TextField(null=True)

    class Meta:
        table = "scheduled_ticks"
        unique_together = (("name", "tick"),)
        ordering = ["name", "tick"]


class SchedulerLease(Model):
    """The leader of a group of schedulers, and until when it leads.

    Taken and renewed with a conditional UPDATE (free, expired or already ours), released on a
    clean stop. An optimisation only: the unique tick row is the guarantee."""

    name = fields.CharField(max_length=100, primary_key=True)
    holder = fields.CharField(max_length=200)
    expires_at = fields.DatetimeField()

    class Meta:
        table = "scheduler_leases"
