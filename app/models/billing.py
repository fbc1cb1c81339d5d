"""Billing: subscription plans and their rates, which plan bills which customer, the
append-only usage ledger, invoices (and credit notes, and the enterprise edition's chargeback
reports) with their lines, and the outbox that notifications leave through.

Money is `Decimal` everywhere (DecimalField), rounded to the currency's minor units by
`app.billing.money`; an invoice copies the plan's rates it used into its lines, so editing a
plan changes only invoices generated after the edit.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from app.models.identity import User
from app.models.jobs import Job
from app.models.tenancy import Location, Organization


class TaxType(StrEnum):
    NONE = "NONE"
    VAT = "VAT"
    GST = "GST"
    SALES_TAX = "SALES_TAX"


class InvoiceType(StrEnum):
    SUMMARY = "SUMMARY"  # one line per billed item
    DETAILED = "DETAILED"  # lines per location
    QUOTA_USAGE = "QUOTA_USAGE"  # quantities only, no costs (state INFORMATION)


class SubscriptionPlan(Model):
    """A price list of a provider or reseller (the owner). Owners bill the customers they
    assign it to: the provider its resellers and direct companies, a reseller its companies."""

    id = fields.IntField(primary_key=True)
    owner: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="subscription_plans", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    description = fields.CharField(max_length=1000, default="")
    currency = fields.CharField(max_length=3)  # ISO 4217
    tax_type = fields.CharEnumField(TaxType, max_length=12, default=TaxType.NONE)
    tax_rate_percent = fields.DecimalField(max_digits=7, decimal_places=4, default=0)
    discount_percent = fields.DecimalField(max_digits=7, decimal_places=4, default=0)
    # Invoices are dated on this day of each month (1–28) and due `due_days` later.
    billing_day = fields.IntField(default=1)
    due_days = fields.IntField(default=30)
    invoice_type = fields.CharEnumField(InvoiceType, max_length=12, default=InvoiceType.SUMMARY)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "subscription_plans"
        unique_together = (("owner", "name"),)
        ordering = ["id"]


class BillingItem(StrEnum):
    WORKSTATION_AGENT = "WORKSTATION_AGENT"
    SERVER_AGENT = "SERVER_AGENT"
    MANAGED_VM = "MANAGED_VM"
    CLOUD_BACKUP_WORKSTATION = "CLOUD_BACKUP_WORKSTATION"
    CLOUD_BACKUP_SERVER = "CLOUD_BACKUP_SERVER"
    CLOUD_BACKUP_VM = "CLOUD_BACKUP_VM"
    REPLICATED_VM = "REPLICATED_VM"
    CLOUD_STORAGE_GB = "CLOUD_STORAGE_GB"
    COMPUTE_HOUR = "COMPUTE_HOUR"
    TRANSFER_OUT_GB = "TRANSFER_OUT_GB"


class StorageMode(StrEnum):
    ALLOCATED = "ALLOCATED"  # the quota given
    CONSUMED = "CONSUMED"  # the space used, in blocks of `block_gb`, optionally rounded up


class PlanRate(Model):
    """One billed item of a plan. No row, or a null rate: the item is not billed."""

    id = fields.IntField(primary_key=True)
    plan: fields.ForeignKeyRelation[SubscriptionPlan] = fields.ForeignKeyField(
        "models.SubscriptionPlan", related_name="rates", on_delete=fields.CASCADE
    )
    item = fields.CharEnumField(BillingItem, max_length=32)
    rate = fields.DecimalField(max_digits=14, decimal_places=4, null=True)
    free_allowance = fields.DecimalField(max_digits=14, decimal_places=4, default=0)
    storage_mode = fields.CharEnumField(StorageMode, max_length=10, default=StorageMode.ALLOCATED)
    block_gb = fields.IntField(default=1)
    round_up = fields.BooleanField(default=False)

    class Meta:
        table = "plan_rates"
        unique_together = (("plan", "item"),)
        ordering = ["id"]


class PlanAssignment(Model):
    """The plan that bills a customer (a company, or a reseller billed by the provider), and
    the day billing started (the first invoice's period starts there)."""

    id = fields.IntField(primary_key=True)
    customer: fields.OneToOneRelation[Organization] = fields.OneToOneField(
        "models.Organization", related_name="plan_assignment", on_delete=fields.CASCADE
    )
    plan: fields.ForeignKeyRelation[SubscriptionPlan] = fields.ForeignKeyField(
        "models.SubscriptionPlan", related_name="assignments", on_delete=fields.RESTRICT
    )
    billing_start = fields.DateField()
    assigned_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "plan_assignments"
        ordering = ["id"]


class UsageEntry(Model):
    """The append-only usage ledger: period quantities (compute hours of failed-over replicas,
    data transferred out) written by the parts that cause them. Never updated or deleted;
    `source_key` makes each write happen once."""

    id = fields.BigIntField(primary_key=True)
    company: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="usage_entries", on_delete=fields.RESTRICT
    )
    location_id = fields.IntField(null=True)
    item = fields.CharEnumField(BillingItem, max_length=32)
    quantity = fields.DecimalField(max_digits=18, decimal_places=6)
    at = fields.DatetimeField()
    source_key = fields.CharField(max_length=200, unique=True)
    recorded_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "usage_ledger"
        ordering = ["id"]
        indexes = (("company_id", "at"),)


class InvoiceKind(StrEnum):
    INVOICE = "INVOICE"
    CREDIT_NOTE = "CREDIT_NOTE"  # cancels an invoice that was corrected
    CHARGEBACK = "CHARGEBACK"  # the enterprise edition's report to a department


class InvoiceState(StrEnum):
    UNPAID = "UNPAID"
    OVERDUE = "OVERDUE"
    PAID = "PAID"
    INFORMATION = "INFORMATION"  # usage reports, chargeback reports, credit notes
    CREDITED = "CREDITED"  # replaced: a credit note and a new invoice were issued


class Invoice(Model):
    id = fields.IntField(primary_key=True)
    customer: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="invoices", on_delete=fields.RESTRICT
    )
    issuer: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="issued_invoices", on_delete=fields.RESTRICT
    )
    plan: fields.ForeignKeyNullableRelation[SubscriptionPlan] = fields.ForeignKeyField(
        "models.SubscriptionPlan", related_name="invoices", null=True, on_delete=fields.SET_NULL
    )
    kind = fields.CharEnumField(InvoiceKind, max_length=12, default=InvoiceKind.INVOICE)
    type = fields.CharEnumField(InvoiceType, max_length=12)
    # Corrections: a credit note and a new invoice get the next revision of the period.
    revision = fields.IntField(default=0)
    corrects: fields.ForeignKeyNullableRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name="corrections", null=True, on_delete=fields.RESTRICT
    )
    number = fields.CharField(max_length=40)
    period_start = fields.DateField()
    period_end = fields.DateField()  # inclusive
    issued_on = fields.DateField()
    due_on = fields.DateField(null=True)
    currency = fields.CharField(max_length=3)
    subtotal = fields.DecimalField(max_digits=18, decimal_places=4, default=0)
    discount = fields.DecimalField(max_digits=18, decimal_places=4, default=0)
    tax = fields.DecimalField(max_digits=18, decimal_places=4, default=0)
    total = fields.DecimalField(max_digits=18, decimal_places=4, default=0)
    # The plan as it was when the invoice was generated (rates, tax, discount).
    plan_snapshot: fields.Field[dict] = fields.JSONField(default=dict)  # type: ignore[assignment]
    state = fields.CharEnumField(InvoiceState, max_length=12)
    # False while a run is still writing it (lines, document): "Full (for generated
    # invoices)" lets the Service Provider Invoice Auditor act only on generated ones.
    generated = fields.BooleanField(default=False)
    job: fields.ForeignKeyNullableRelation[Job] = fields.ForeignKeyField(
        "models.Job", related_name="invoices", null=True, on_delete=fields.SET_NULL
    )
    paid_at = fields.DatetimeField(null=True)
    sent_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "invoices"
        unique_together = (
            ("customer", "kind", "type", "period_start", "revision"),
            ("issuer", "number"),
        )
        ordering = ["id"]
        indexes = (("issuer_id", "issued_on"), ("state", "due_on"))


class InvoiceLine(Model):
    id = fields.BigIntField(primary_key=True)
    invoice: fields.ForeignKeyRelation[Invoice] = fields.ForeignKeyField(
        "models.Invoice", related_name="lines", on_delete=fields.CASCADE
    )
    position = fields.IntField()
    location: fields.ForeignKeyNullableRelation[Location] = fields.ForeignKeyField(
        "models.Location", related_name="invoice_lines", null=True, on_delete=fields.SET_NULL
    )
    item = fields.CharEnumField(BillingItem, max_length=32)
    description = fields.CharField(max_length=300)
    unit = fields.CharField(max_length=20)
    quantity = fields.DecimalField(max_digits=18, decimal_places=6)
    free_allowance = fields.DecimalField(max_digits=18, decimal_places=6, default=0)
    billable_quantity = fields.DecimalField(max_digits=18, decimal_places=6)
    rate = fields.DecimalField(max_digits=14, decimal_places=4, null=True)
    amount = fields.DecimalField(max_digits=18, decimal_places=4, default=0)

    class Meta:
        table = "invoice_lines"
        unique_together = (("invoice", "position"),)
        ordering = ["invoice_id", "position"]


class OutboxChannel(StrEnum):
    EMAIL = "EMAIL"
    WEBHOOK = "WEBHOOK"


class OutboxState(StrEnum):
    PENDING = "PENDING"
    SENDING = "SENDING"  # claimed by a worker (reclaimed when its lease runs out)
    SENT = "SENT"
    FAILED = "FAILED"  # gave up after the last attempt


class OutboxMessage(Model):
    """A notification to deliver, written in the same transaction as the change it reports and
    delivered by a worker; `dedup_key` makes each notification exist once."""

    id = fields.BigIntField(primary_key=True)
    channel = fields.CharEnumField(OutboxChannel, max_length=8)
    organization_id = fields.IntField(null=True)
    recipient = fields.CharField(max_length=1000)  # an e-mail address or a URL
    subject = fields.CharField(max_length=300, default="")
    body = fields.TextField(default="")
    payload: fields.Field[dict] = fields.JSONField(default=dict)  # type: ignore[assignment]
    # Attachments by reference (e.g. {"invoice_pdf": 12}), rendered at delivery.
    attachments: fields.Field[dict] = fields.JSONField(default=dict)  # type: ignore[assignment]
    dedup_key = fields.CharField(max_length=200, unique=True)
    state = fields.CharEnumField(OutboxState, max_length=8, default=OutboxState.PENDING)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(null=True)
    lease_until = fields.DatetimeField(null=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)
    requested_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="outbox_messages", null=True, on_delete=fields.SET_NULL
    )

    class Meta:
        table = "outbox"
        ordering = ["id"]
        indexes = (("state", "next_attempt_at"),)


class OutboxDelivery(Model):
    """The delivery log: one row per attempt to deliver an outbox message."""

    id = fields.BigIntField(primary_key=True)
    message: fields.ForeignKeyRelation[OutboxMessage] = fields.ForeignKeyField(
        "models.OutboxMessage", related_name="deliveries", on_delete=fields.CASCADE
    )
    attempt = fields.IntField()
    at = fields.DatetimeField(auto_now_add=True)
    ok = fields.BooleanField()
    status = fields.CharField(max_length=40, default="")  # an HTTP status, an SMTP reply code
    error = fields.TextField(null=True)
    duration_ms = fields.IntField(default=0)
    worker_id = fields.CharField(max_length=100, default="")

    class Meta:
        table = "outbox_deliveries"
        ordering = ["id"]
