"""Signed access tokens (JWT, HS256) whose claims decide what a WebSocket client may see.

- kiosk      -> ``centre``: the live board of that centre
- technician -> ``staff_id``: that person's own award notifications (and their centre's board)
- manager    -> a region (or one centre): the SLA alerts of its centres
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
KINDS = ("kiosk", "technician", "manager")
ISSUER = "pitstop"
MAX_TTL_S = 366 * 86400  # a token lives a year at most (a revocation is kept as long as a token can live)


class TokenError(ValueError):
    """The token is missing, malformed, badly signed, expired or grants nothing. Get a new token."""


@dataclass(frozen=True, slots=True)
class Claims:
    kind: str
    subject: str  # centre id (kiosk), staff id (technician), region or centre id (manager)
    expires_at: int
    token_id: str
    staff: str | None = None  # a manager token's person (who gives spot awards from the manager page)


def issue_token(
    secret: str,
    kind: str,
    subject: str,
    *,
    ttl_s: int = 30 * 86400,
    now: float | None = None,
    staff: str | None = None,
) -> str:
    if kind not in KINDS:
        raise TokenError(f"unknown token kind {kind!r} (one of: {', '.join(KINDS)})")
    if not subject:
        raise TokenError("a token needs a subject (centre, staff id or region)")
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise TokenError(f"a token lives from 1 s to {MAX_TTL_S // 86400} days (got {ttl_s} s)")
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": ISSUER,
        "kind": kind,
        "sub": subject,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    if staff is not None:
        if kind != "manager" or not staff:
            raise TokenError("only a manager token names a person (the giver of spot awards)")
        claims["staff"] = staff
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: object) -> Claims:
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise TokenError("token must be a non-empty string")
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["exp", "sub", "kind", "jti"]}
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid token: {exc}") from None
    kind, subject = claims.get("kind"), claims.get("sub")
    if kind not in KINDS or not isinstance(subject, str) or not subject:
        raise TokenError("token grants nothing")
    staff = claims.get("staff")
    if staff is not None and (kind != "manager" or not isinstance(staff, str) or not staff):
        raise TokenError("token grants nothing")
    return Claims(kind, subject, int(claims["exp"]), str(claims["jti"]), staff)
