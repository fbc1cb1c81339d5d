"""argon2id password hashing and the password policy."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.errors import BadInput
from app.settings import get_settings

MIN_LENGTH = 12

# A small list of the most common passwords (and their 12+ character cousins).
COMMON_PASSWORDS = frozenset(
    {
        "123456789012",
        "1234567890123",
        "password1234",
        "password12345",
        "passwordpassword",
        "qwertyuiop12",
        "qwertyuiop123",
        "qwerty123456",
        "iloveyou1234",
        "administrator",
        "administrator1",
        "letmein12345",
        "welcome12345",
        "welcome123456",
        "changeme1234",
        "changeme12345",
        "abcdefghijkl",
        "abc123456789",
        "111111111111",
        "000000000000",
        "aaaaaaaaaaaa",
        "password1234!",
        "p@ssw0rd1234",
        "p@ssword1234",
        "football1234",
        "baseball1234",
        "superman1234",
        "trustno11234",
        "monkey123456",
        "dragon123456",
        "sunshine1234",
        "princess1234",
        "starwars1234",
        "whatever1234",
        "1q2w3e4r5t6y",
        "zaq12wsxcde3",
        "qazwsxedcrfv",
        "veeam1234567",
        "backup123456",
        "tenantry1234",
    }
)


@lru_cache(maxsize=4)
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


def hasher() -> PasswordHasher:
    s = get_settings()
    return _hasher(s.argon2_time_cost, s.argon2_memory_cost, s.argon2_parallelism)


def hash_password(password: str) -> str:
    return hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# A hash to verify against when the account does not exist, so that timing tells nothing.
@lru_cache(maxsize=1)
def dummy_hash() -> str:
    return hash_password("not-a-real-password-for-timing")


def check_policy(password: str, email: str, field: str = "password") -> None:
    if len(password) < MIN_LENGTH:
        raise BadInput(f"the password must be at least {MIN_LENGTH} characters long", field=field)
    lowered = password.lower()
    if lowered == email.lower() or lowered == email.split("@")[0].lower():
        raise BadInput("the password must not be the e-mail address", field=field)
    if lowered in COMMON_PASSWORDS:
        raise BadInput("the password is too common; choose another", field=field)
    if len(set(password)) < 4:
        raise BadInput("the password repeats too few characters", field=field)
