"""People and their credentials: users, session tokens, API keys, login throttling."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from app.models.tenancy import Location, Organization


class User(Model):
    id = fields.IntField(primary_key=True)
    email = fields.CharField(max_length=254, unique=True)
    name = fields.CharField(max_length=200)
    password_hash = fields.CharField(max_length=255)
    # The seed's role name, word for word ("Company Owner", "Service Provider Operator"...).
    role = fields.CharField(max_length=64, db_index=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="users", on_delete=fields.CASCADE
    )
    enabled = fields.BooleanField(default=True)
    # False: the whole organization's tree (all companies / all locations);
    # True: only the companies or locations listed below.
    scope_restricted = fields.BooleanField(default=False)
    scope_companies: fields.ManyToManyRelation[Organization] = fields.ManyToManyField(
        "models.Organization", related_name="scoped_users", through="user_scope_companies"
    )
    scope_locations: fields.ManyToManyRelation[Location] = fields.ManyToManyField(
        "models.Location", related_name="scoped_users", through="user_scope_locations"
    )
    password_changed_at = fields.DatetimeField(null=True)
    last_login_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "users"
        ordering = ["id"]
        # The owner loader reads users by organization and (primary) role.
        indexes = (("organization_id", "role"),)


class SessionToken(Model):
    """An opaque bearer token from `login`: only its SHA-256 is stored."""

    id = fields.IntField(primary_key=True)
    token_hash = fields.CharField(max_length=64, unique=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="sessions", on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    client_address = fields.CharField(max_length=64, default="")

    class Meta:
        table = "session_tokens"


class ApiKey(Model):
    """A personal API key for automation: shown once, stored hashed, revocable, expiring."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100)
    prefix = fields.CharField(max_length=16, unique=True)
    key_hash = fields.CharField(max_length=64)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="api_keys", on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_keys"


class LoginThrottle(Model):
    """Failed-login counters per account ("account:<email>") and per client ("address:<ip>")."""

    id = fields.IntField(primary_key=True)
    key = fields.CharField(max_length=300, unique=True)
    failures = fields.IntField(default=0)
    window_started_at = fields.DatetimeField()
    locked_until = fields.DatetimeField(null=True)

    class Meta:
        table = "login_throttle"
