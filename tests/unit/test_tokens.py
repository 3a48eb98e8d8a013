"""Access tokens: HS256 JWTs that round-trip per kind and refuse every forgery with a clear TokenError."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from dashboards.tokens import Claims, TokenError, issue_token, verify_token

SECRET = "unit-test-secret-0123456789abcdef-xyz"


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(token: str) -> dict[str, object]:
    """The unverified payload of ``token``."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def refused(token: object, secret: str = SECRET) -> str:
    """The message of the TokenError that verifying ``token`` raises."""
    with pytest.raises(TokenError) as info:
        verify_token(secret, token)
    return str(info.value)


@pytest.mark.parametrize(("kind", "subject"), [("kiosk", "C01"), ("technician", "S0001"), ("manager", "west")])
def test_round_trip_per_kind(kind: str, subject: str) -> None:
    """A token issued for each kind verifies to the same kind, subject and expiry."""
    now = time.time()
    token = issue_token(SECRET, kind, subject, ttl_s=600, now=now)
    verified = verify_token(SECRET, token)
    assert verified == Claims(kind, subject, int(now) + 600, verified.token_id)
    assert len(verified.token_id) == 32
    assert claims(token)["iss"] == "pitstop"


def test_each_token_has_its_own_id() -> None:
    """Two tokens for the same subject carry different token ids."""
    first, second = (verify_token(SECRET, issue_token(SECRET, "kiosk", "C01")) for _ in range(2))
    assert first.token_id != second.token_id


def test_expired_token() -> None:
    """A token past its expiry is refused as expired."""
    token = issue_token(SECRET, "kiosk", "C01", ttl_s=60, now=time.time() - 3600)
    assert refused(token) == "token expired"


def test_wrong_secret() -> None:
    """A token signed with another secret fails signature verification."""
    token = issue_token("another-secret-0123456789abcdef-xyz", "kiosk", "C01")
    assert refused(token) == "invalid token: Signature verification failed"


def test_tampered_payload() -> None:
    """Changing the subject in a signed token breaks its signature."""
    token = issue_token(SECRET, "kiosk", "C01")
    header, _payload, signature = token.split(".")
    forged = {**claims(token), "sub": "C02"}
    assert refused(f"{header}.{b64(forged)}.{signature}") == "invalid token: Signature verification failed"


def test_alg_none_is_refused() -> None:
    """An unsigned token (alg none) is refused even with valid claims."""
    body = b64({"iss": "pitstop", "kind": "kiosk", "sub": "C01", "exp": int(time.time()) + 60, "jti": "x"})
    assert (
        refused(f"{b64({'alg': 'none', 'typ': 'JWT'})}.{body}.")
        == "invalid token: The specified alg value is not allowed"
    )


@pytest.mark.parametrize("token", [12345, None, b"abc.def.ghi", "", "a" * 5000])
def test_non_string_or_empty_token(token: object) -> None:
    """Anything but a non-empty string of sane length is refused before decoding."""
    assert refused(token) == "token must be a non-empty string"


def test_garbage_string() -> None:
    """A string that is not a JWT is an invalid token."""
    assert refused("not-a-jwt") == "invalid token: Not enough segments"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"kind": "admin"}, "token grants nothing"),
        ({"sub": ""}, "token grants nothing"),
        ({"iss": "someone-else"}, "invalid token: Invalid issuer"),
        ({"jti": None}, 'invalid token: Token is missing the "jti" claim'),
    ],
)
def test_validly_signed_tokens_that_grant_nothing(extra: dict[str, object], message: str) -> None:
    """Correctly signed tokens with an unknown kind, empty subject, foreign issuer or no id are refused."""
    payload = {"iss": "pitstop", "kind": "kiosk", "sub": "C01", "exp": int(time.time()) + 60, "jti": "j1", **extra}
    token = jwt.encode({k: v for k, v in payload.items() if v is not None}, SECRET, algorithm="HS256")
    assert refused(token) == message


def test_issue_refuses_unknown_kind_and_empty_subject() -> None:
    """Tokens are only issued for a known kind and a non-empty subject."""
    with pytest.raises(TokenError, match=r"^unknown token kind 'admin' \(one of: kiosk, technician, manager\)$"):
        issue_token(SECRET, "admin", "x")
    with pytest.raises(TokenError, match=r"^a token needs a subject \(centre, staff id or region\)$"):
        issue_token(SECRET, "kiosk", "")
