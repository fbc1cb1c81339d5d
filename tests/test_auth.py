"""Authentication flows through GraphQL: login, session revocation, password change, API keys,
the viewer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.authz.matrix import Action, Portal, load_matrix
from app.graphql.ids import to_global_id
from app.models import ApiKey, AuditEntry, Organization, SessionToken, User
from app.services.auth import (
    BAD_CREDENTIALS,
    INTERACTIVE_ONLY,
    ORGANIZATION_DISABLED,
    USER_DISABLED,
)
from tests.factories import PASSWORD, slug

LOGIN = """mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { token expiresAt user { email lastLoginAt } }
}"""
ME = "{ me { user { email } role portal authMethod scopeRestricted } }"
LOGOUT = "mutation { logout }"
PASSWORD_CHANGE = """mutation($current: String!, $new: String!) {
  passwordChange(input: {currentPassword: $current, newPassword: $new}) { token user { email } }
}"""
API_KEY_CREATE = """mutation($name: String!, $days: Int!) {
  apiKeyCreate(input: {name: $name, expiresInDays: $days}) {
    secret apiKey { id name prefix expiresAt revokedAt lastUsedAt }
  }
}"""
API_KEY_REVOKE = "mutation($id: ID!) { apiKeyRevoke(id: $id) { id revokedAt } }"
API_KEYS = "{ apiKeys { id name prefix revokedAt lastUsedAt } }"

OWNER = ("A1", "Company Owner")
NEW_PASSWORD = "Another-Long-Secret-42"


def email_of(org: str, role: str) -> str:
    return f"{slug(f'{org}:{role}')}@example.test"


def code(body: dict) -> str:
    return body["errors"][0]["extensions"]["code"]


async def login(gql, email: str, password: str = PASSWORD) -> dict:
    return await gql(LOGIN, {"email": email, "password": password})


async def login_token(gql, email: str, password: str = PASSWORD) -> str:
    body = await login(gql, email, password)
    assert "errors" not in body, body
    return body["data"]["login"]["token"]


async def assert_unauthenticated(gql, token: str) -> None:
    body = await gql(ME, token=token)
    assert body["data"] is None
    assert code(body) == "UNAUTHENTICATED"


# --- login -----------------------------------------------------------------------------------


async def test_login_issues_a_token_that_works_for_me(world, gql):
    email = email_of(*OWNER)
    before = datetime.now(UTC)
    body = await login(gql, email.upper())  # e-mail addresses are matched case-insensitively
    assert "errors" not in body, body
    payload = body["data"]["login"]
    assert payload["token"].startswith("tnts_")
    assert payload["user"]["email"] == email
    assert payload["user"]["lastLoginAt"] is not None
    expires = datetime.fromisoformat(payload["expiresAt"])
    assert timedelta(hours=11) < expires - before <= timedelta(hours=12, minutes=1)

    me = await gql(ME, token=payload["token"])
    assert me == {
        "data": {
            "me": {
                "user": {"email": email},
                "role": "Company Owner",
                "portal": "Client Portal",
                "authMethod": "session",
                "scopeRestricted": False,
            }
        }
    }
    user = await User.get(email=email)
    assert user.last_login_at is not None and user.last_login_at >= before
    entry = await AuditEntry.get(action="login")
    assert (entry.outcome, entry.object_type, entry.object_id) == ("SUCCESS", "User", str(user.id))
    assert entry.organization_id == world.orgs["A1"].id
    assert entry.actor_id == user.id
    assert entry.client_address == "10.0.0.1"


async def test_wrong_password_and_unknown_email_get_the_same_answer(world, gql):
    wrong = await login(gql, email_of(*OWNER), "Not-The-Password-1")
    unknown = await login(gql, "nobody@example.test", PASSWORD)
    for body in (wrong, unknown):
        assert body["data"] is None
        assert code(body) == "UNAUTHENTICATED"
        assert body["errors"][0]["message"] == BAD_CREDENTIALS
    entries = await AuditEntry.filter(action="login").order_by("id")
    assert [(e.outcome, e.organization_id) for e in entries] == [
        ("FAILURE", world.orgs["A1"].id),
        ("FAILURE", None),
    ]
    assert entries[0].details["error"] == "UNAUTHENTICATED"
    assert entries[1].details["email"] == "nobody@example.test"
    assert entries[1].object_id == ""


async def test_disabled_user_cannot_log_in_and_sessions_stop(world, gql):
    user = world.user(*OWNER)
    await User.filter(id=user.id).update(enabled=False)
    body = await login(gql, user.email)
    assert code(body) == "UNAUTHENTICATED"
    assert body["errors"][0]["message"] == USER_DISABLED
    # With the wrong password nothing tells that the account exists.
    body = await login(gql, user.email, "Not-The-Password-1")
    assert body["errors"][0]["message"] == BAD_CREDENTIALS
    await assert_unauthenticated(gql, world.token(*OWNER))


async def test_disabled_company_refuses_login(world, gql):
    await Organization.filter(id=world.orgs["A1"].id).update(enabled=False)
    body = await login(gql, email_of(*OWNER))
    assert code(body) == "UNAUTHENTICATED"
    assert body["errors"][0]["message"] == ORGANIZATION_DISABLED
    await assert_unauthenticated(gql, world.token(*OWNER))
    # Another company is untouched.
    assert "errors" not in await login(gql, email_of("A2", "Company Owner"))


async def test_disabled_reseller_disables_its_companies_users(world, gql):
    await Organization.filter(id=world.orgs["R1"].id).update(enabled=False)
    for org, role in (OWNER, ("A2", "Location User"), ("R1", "Service Provider Operator")):
        body = await login(gql, email_of(org, role))
        assert code(body) == "UNAUTHENTICATED", (org, role)
        assert body["errors"][0]["message"] == ORGANIZATION_DISABLED
        await assert_unauthenticated(gql, world.token(org, role))
    # Companies of another reseller and the provider's staff carry on.
    assert "errors" not in await gql(ME, token=world.token("B1", "Company Owner"))
    assert "errors" not in await login(gql, email_of("Provider", "Service Provider Operator"))
    # Enabling the reseller again brings the existing session back (it was never revoked here).
    await Organization.filter(id=world.orgs["R1"].id).update(enabled=True)
    assert "errors" not in await gql(ME, token=world.token(*OWNER))


async def test_expired_session_is_refused(world, gql):
    token = await login_token(gql, email_of(*OWNER))
    assert "errors" not in await gql(ME, token=token)
    await SessionToken.all().update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    await assert_unauthenticated(gql, token)
    await assert_unauthenticated(gql, world.token(*OWNER))


async def test_garbage_token_is_refused(world, gql):
    await assert_unauthenticated(gql, "tnts_not-a-real-token")
    await assert_unauthenticated(gql, "tntk_abc_def")
    body = await gql(ME)
    assert code(body) == "UNAUTHENTICATED"


# --- logout ----------------------------------------------------------------------------------


async def test_logout_revokes_only_the_current_session(world, gql):
    token = await login_token(gql, email_of(*OWNER))
    body = await gql(LOGOUT, token=token)
    assert body == {"data": {"logout": True}}
    await assert_unauthenticated(gql, token)
    assert code(await gql(LOGOUT, token=token)) == "UNAUTHENTICATED"
    # The world's session of the same user is another session: still alive.
    assert "errors" not in await gql(ME, token=world.token(*OWNER))
    entry = await AuditEntry.get(action="logout")
    assert (entry.outcome, entry.actor_id) == ("SUCCESS", world.user(*OWNER).id)


async def test_logout_with_an_api_key_points_to_api_key_revoke(world, gql):
    secret = await create_key(gql, world.token(*OWNER))
    body = await gql(LOGOUT, token=secret)
    assert code(body) == "BAD_USER_INPUT"
    assert "apiKeyRevoke" in body["errors"][0]["message"]
    assert "errors" not in await gql(ME, token=secret)


# --- password change -------------------------------------------------------------------------


async def test_password_change_revokes_every_session_and_returns_a_new_one(world, gql):
    email = email_of(*OWNER)
    other = await login_token(gql, email)
    body = await gql(
        PASSWORD_CHANGE, {"current": PASSWORD, "new": NEW_PASSWORD}, token=world.token(*OWNER)
    )
    assert "errors" not in body, body
    fresh = body["data"]["passwordChange"]["token"]
    assert body["data"]["passwordChange"]["user"]["email"] == email
    await assert_unauthenticated(gql, world.token(*OWNER))
    await assert_unauthenticated(gql, other)
    assert "errors" not in await gql(ME, token=fresh)
    assert (await login(gql, email))["errors"][0]["message"] == BAD_CREDENTIALS
    assert "errors" not in await login(gql, email, NEW_PASSWORD)
    user = await User.get(email=email)
    assert user.password_changed_at is not None
    entry = await AuditEntry.get(action="passwordChange")
    assert entry.outcome == "SUCCESS"
    assert entry.details["sessionsRevoked"] == 2


async def test_password_change_checks_the_current_password(world, gql):
    token = world.token(*OWNER)
    body = await gql(
        PASSWORD_CHANGE, {"current": "Not-The-Password-1", "new": NEW_PASSWORD}, token=token
    )
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "currentPassword"
    assert "errors" not in await gql(ME, token=token)  # nothing revoked
    entry = await AuditEntry.get(action="passwordChange")
    assert (entry.outcome, entry.details["error"]) == ("FAILURE", "BAD_USER_INPUT")


async def test_password_change_policy_errors_name_the_field(world, gql):
    token = world.token(*OWNER)
    email = email_of(*OWNER)
    cases = {
        "Short-1": "at least 12 characters",
        email: "e-mail",
        "Password1234": "too common",
        PASSWORD: "differ",
    }
    for new, words in cases.items():
        body = await gql(PASSWORD_CHANGE, {"current": PASSWORD, "new": new}, token=token)
        assert code(body) == "BAD_USER_INPUT", new
        assert body["errors"][0]["extensions"]["field"] == "newPassword"
        assert words in body["errors"][0]["message"], (new, body)
    assert "errors" not in await gql(ME, token=token)
    assert "errors" not in await login(gql, email)


# --- API keys --------------------------------------------------------------------------------


async def create_key(gql, token: str, name: str = "backup script", days: int = 30) -> str:
    body = await gql(API_KEY_CREATE, {"name": name, "days": days}, token=token)
    assert "errors" not in body, body
    return body["data"]["apiKeyCreate"]["secret"]


async def test_api_key_create_use_list_and_revoke(world, gql):
    token = world.token(*OWNER)
    body = await gql(API_KEY_CREATE, {"name": " nightly ", "days": 30}, token=token)
    assert "errors" not in body, body
    created = body["data"]["apiKeyCreate"]
    key = await ApiKey.get(prefix=created["apiKey"]["prefix"])
    assert created["apiKey"]["id"] == to_global_id("ApiKey", key.id)
    assert created["apiKey"]["name"] == "nightly"
    assert created["apiKey"]["revokedAt"] is None and created["apiKey"]["lastUsedAt"] is None
    assert created["secret"].startswith(f"tntk_{key.prefix}_")
    assert key.key_hash != created["secret"] and created["secret"] not in str(key.__dict__)
    expires = datetime.fromisoformat(created["apiKey"]["expiresAt"])
    assert timedelta(days=29, hours=23) < expires - datetime.now(UTC) <= timedelta(days=30)

    me = await gql(ME, token=created["secret"])
    assert me["data"]["me"]["authMethod"] == "api_key"
    assert me["data"]["me"]["user"]["email"] == email_of(*OWNER)

    listed = (await gql(API_KEYS, token=token))["data"]["apiKeys"]
    assert [(k["id"], k["name"]) for k in listed] == [(created["apiKey"]["id"], "nightly")]
    assert listed[0]["lastUsedAt"] is not None
    # Another user's list does not show it.
    other = await gql(API_KEYS, token=world.token("A1", "Company Administrator"))
    assert other == {"data": {"apiKeys": []}}

    # The key may revoke itself (key rotation from automation).
    body = await gql(API_KEY_REVOKE, {"id": created["apiKey"]["id"]}, token=created["secret"])
    assert "errors" not in body, body
    assert body["data"]["apiKeyRevoke"]["revokedAt"] is not None
    await assert_unauthenticated(gql, created["secret"])
    actions = (
        await AuditEntry.filter(object_type="ApiKey")
        .order_by("id")
        .values_list("action", "outcome", "organization_id")
    )
    a1 = world.orgs["A1"].id
    assert actions == [("apiKeyCreate", "SUCCESS", a1), ("apiKeyRevoke", "SUCCESS", a1)]


async def test_expired_api_key_is_refused(world, gql):
    secret = await create_key(gql, world.token(*OWNER))
    assert "errors" not in await gql(ME, token=secret)
    await ApiKey.all().update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    await assert_unauthenticated(gql, secret)


async def test_api_key_with_a_wrong_secret_is_refused(world, gql):
    secret = await create_key(gql, world.token(*OWNER))
    await assert_unauthenticated(gql, secret[:-4] + "AAAA")


async def test_api_key_cannot_manage_credentials(world, gql):
    secret = await create_key(gql, world.token(*OWNER))
    body = await gql(API_KEY_CREATE, {"name": "child", "days": 30}, token=secret)
    assert code(body) == "FORBIDDEN"
    assert body["errors"][0]["message"] == INTERACTIVE_ONLY
    body = await gql(PASSWORD_CHANGE, {"current": PASSWORD, "new": NEW_PASSWORD}, token=secret)
    assert code(body) == "FORBIDDEN"
    assert body["errors"][0]["message"] == INTERACTIVE_ONLY
    assert await ApiKey.all().count() == 1
    assert "errors" not in await login(gql, email_of(*OWNER))


async def test_api_key_lifetime_is_bounded(world, gql, settings):
    token = world.token(*OWNER)
    for days in (0, -1, settings.api_key_max_days + 1):
        body = await gql(API_KEY_CREATE, {"name": "k", "days": days}, token=token)
        assert code(body) == "BAD_USER_INPUT", days
        assert body["errors"][0]["extensions"]["field"] == "expiresInDays"
    body = await gql(API_KEY_CREATE, {"name": "  ", "days": 5}, token=token)
    assert body["errors"][0]["extensions"]["field"] == "name"
    assert await ApiKey.all().count() == 0
    body = await gql(
        'mutation { apiKeyCreate(input: {name: "default"}) { apiKey { expiresAt } } }', token=token
    )
    expires = datetime.fromisoformat(body["data"]["apiKeyCreate"]["apiKey"]["expiresAt"])
    assert timedelta(days=89, hours=23) < expires - datetime.now(UTC) <= timedelta(days=90)


async def test_someone_elses_api_key_is_not_found(world, gql):
    await create_key(gql, world.token(*OWNER))
    key = await ApiKey.get()
    gid = to_global_id("ApiKey", key.id)
    for org, role in (
        ("A1", "Company Administrator"),
        ("Provider", "Service Provider Global Administrator"),
    ):
        body = await gql(API_KEY_REVOKE, {"id": gid}, token=world.token(org, role))
        assert code(body) == "NOT_FOUND", (org, role)
    await key.refresh_from_db()
    assert key.revoked_at is None
    body = await gql(
        API_KEY_REVOKE, {"id": to_global_id("User", key.id)}, token=world.token(*OWNER)
    )
    assert code(body) == "BAD_USER_INPUT"


async def test_credential_mutations_need_a_login(world, gql):
    for query, variables in (
        (LOGOUT, None),
        (API_KEYS, None),
        (API_KEY_CREATE, {"name": "k", "days": 5}),
        (PASSWORD_CHANGE, {"current": PASSWORD, "new": NEW_PASSWORD}),
    ):
        assert code(await gql(query, variables)) == "UNAUTHENTICATED", query


# --- me --------------------------------------------------------------------------------------

ME_FULL = """{ me {
  user { email } role portal scopeRestricted authMethod
  organization { id name kind }
  permissions { functionality access actions }
} }"""


def expected_permissions(portal: Portal, role: str) -> list[dict]:
    matrix = load_matrix().portals[portal]
    return [
        {
            "functionality": row.functionality,
            "access": row.cells[role].text,
            "actions": [a.value for a in Action if a in row.cells[role].actions],
        }
        for row in matrix.rows
    ]


async def test_me_for_a_company_owner(world, gql):
    body = await gql(ME_FULL, token=world.token(*OWNER))
    assert "errors" not in body, body
    me = body["data"]["me"]
    assert me["role"] == "Company Owner"
    assert me["portal"] == "Client Portal"
    assert me["scopeRestricted"] is False
    assert me["authMethod"] == "session"
    assert me["organization"] == {
        "id": to_global_id("Company", world.orgs["A1"].id),
        "name": "A1",
        "kind": "COMPANY",
    }
    assert me["permissions"] == expected_permissions(Portal.CLIENT, "Company Owner")
    # Spot-check the seed's words.
    by_name = {p["functionality"]: p for p in me["permissions"]}
    assert by_name["Veeam ONE"] == {
        "functionality": "Veeam ONE",
        "access": "Read",
        "actions": ["READ"],
    }
    assert by_name["Managed computers"]["actions"] == ["READ", "CREATE", "UPDATE", "DELETE"]


async def test_me_for_a_restricted_provider_operator(world, gql):
    body = await gql(ME_FULL, token=world.token("Provider", "Service Provider Operator:P1"))
    assert "errors" not in body, body
    me = body["data"]["me"]
    assert me["user"]["email"] == email_of("Provider", "Service Provider Operator:P1")
    assert me["role"] == "Service Provider Operator"
    assert me["portal"] == "Reseller Portal"
    assert me["scopeRestricted"] is True
    assert me["organization"] == {
        "id": to_global_id("ServiceProvider", world.orgs["Provider"].id),
        "name": "Provider",
        "kind": "PROVIDER",
    }
    assert me["permissions"] == expected_permissions(Portal.RESELLER, "Service Provider Operator")
    by_name = {p["functionality"]: p for p in me["permissions"]}
    assert by_name["Plugin library"] == {
        "functionality": "Plugin library",
        "access": "N/A",
        "actions": [],
    }
    assert by_name["Client companies"]["access"] == "Full (except for creation and removal)"
    # The unrestricted operator of the same organization is not restricted.
    body = await gql(ME_FULL, token=world.token("Provider", "Service Provider Operator"))
    assert body["data"]["me"]["scopeRestricted"] is False


async def test_me_for_a_reseller_user(world, gql):
    body = await gql(ME_FULL, token=world.token("R1", "Service Provider Invoice Auditor"))
    org = body["data"]["me"]["organization"]
    assert org == {
        "id": to_global_id("Reseller", world.orgs["R1"].id),
        "name": "R1",
        "kind": "RESELLER",
    }


async def test_unknown_email_still_costs_one_password_verification(world, gql, monkeypatch):
    """No timing oracle: an unknown account is verified against the dummy hash."""
    from app.auth.passwords import dummy_hash
    from app.services import auth

    seen: list[str] = []
    real = auth.verify_password

    def counting(password_hash: str, password: str) -> bool:
        seen.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(auth, "verify_password", counting)
    await login(gql, "nobody@example.test", PASSWORD)
    await login(gql, email_of(*OWNER), "Not-The-Password-1")
    assert seen == [dummy_hash(), world.user(*OWNER).password_hash]
