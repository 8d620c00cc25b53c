"""Provider tokens (JWT, ES256) for token authentication, with the clock passed in.

Apple's format (HTTP2.md 2): header ``{"alg": "ES256", "kid": <key id>}``, claims
``{"iss": <team id>, "iat": <UNIX seconds>}``, signed with the ``.p8`` key (a PKCS#8
P-256 private key). Signing and verifying are PyJWT's (ES256 over ``cryptography``);
PyJWT emits the raw ``R||S`` signature JWS requires. Nothing here reads a clock: every
function that needs the time takes ``now`` (UNIX seconds).

:class:`ProviderTokenCache` is the refresh rule as pure logic: one token per key,
reused until it is 50 minutes old, and never replaced sooner than 20 minutes after
the previous one (Apple: "no more than once every 20 minutes and no less than once
every 60 minutes"; a new token within 20 minutes on one connection gets
``429 TooManyProviderTokenUpdates``). Whoever shares a cache between tasks holds a
lock around :meth:`ProviderTokenCache.token`.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Mapping
from typing import Final

import attrs
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from apns_legacy.wire import LocalProtocolError

from ._reasons import Reason

#: Replace a token once it is this old (seconds): Pushy's default, inside Apple's hour.
REFRESH_AFTER: Final = 50 * 60
#: Never replace a token sooner than this after the previous one (seconds) [TOKEN].
MIN_REFRESH_INTERVAL: Final = 20 * 60
#: APNs refuses a token whose ``iat`` is older than this (seconds) [TOKEN].
MAX_TOKEN_AGE: Final = 60 * 60


def _check_id(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value or not value.isascii() or not value.isalnum():
        raise LocalProtocolError(
            f"{attribute.name} {value!r} must be ASCII letters and digits (Apple's are 10)"
        )


@attrs.frozen(kw_only=True)
class ProviderKey:
    """A token-signing key: the ``.p8`` private key with its key id and team id."""

    key_id: str = attrs.field(validator=_check_id)
    team_id: str = attrs.field(validator=_check_id)
    private_key: ec.EllipticCurvePrivateKey = attrs.field(repr=False)

    @classmethod
    def from_p8(cls, data: bytes, *, key_id: str, team_id: str) -> ProviderKey:
        """Parse a ``.p8`` file's bytes (PEM PKCS#8), in memory.

        Raises:
            LocalProtocolError: not a PEM private key, or not a P-256 EC key.
        """
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise LocalProtocolError(
                f"auth key is not an unencrypted PEM private key: {exc}"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise LocalProtocolError("auth key must be a P-256 (ES256) EC private key")
        return cls(key_id=key_id, team_id=team_id, private_key=key)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half, as APNs holds it."""
        return self.private_key.public_key()


@attrs.frozen(kw_only=True)
class ProviderToken:
    """One signed token and when it was issued (its ``iat``)."""

    value: str = attrs.field(repr=False)
    issued_at: int


def make_provider_token(key: ProviderKey, *, now: int) -> ProviderToken:
    """A new provider token issued at ``now`` (whole UNIX seconds)."""
    if type(now) is not int:
        raise TypeError(f"now must be whole UNIX seconds (int), not {type(now).__name__}")
    value = jwt.encode(
        {"iss": key.team_id, "iat": now},
        key.private_key,
        algorithm="ES256",
        headers={"kid": key.key_id, "typ": None},
    )
    return ProviderToken(value=value, issued_at=now)


@attrs.frozen(kw_only=True)
class VerifiedToken:
    """What a valid provider token says."""

    team_id: str
    key_id: str
    issued_at: int


class TokenRejected(Exception):
    """A provider token APNs would refuse; ``reason`` is what it would answer."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def verify_provider_token(
    token: str,
    keys: Mapping[tuple[str, str], ec.EllipticCurvePublicKey],
    *,
    now: int,
    max_age: int = MAX_TOKEN_AGE,
) -> VerifiedToken:
    """Check ``token`` as APNs does: ES256 only, a registered (team id, key id), fresh ``iat``.

    Args:
        token: the JWT (without ``bearer``).
        keys: public keys by ``(team id, key id)``.
        now: the current time, UNIX seconds.
        max_age: ``iat`` older than this is stale.

    Raises:
        TokenRejected: ``InvalidProviderToken`` (malformed, not ES256, unknown key,
            bad signature, wrong claims, ``iat`` in the future) or
            ``ExpiredProviderToken`` (``iat`` older than ``max_age``).
    """
    invalid = Reason.INVALID_PROVIDER_TOKEN
    token = _der_signature_to_raw(token)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenRejected(invalid, f"malformed token ({exc})") from None
    if header.get("alg") != "ES256":
        raise TokenRejected(invalid, f"alg is {header.get('alg')!r}; APNs takes only ES256")
    kid = header.get("kid")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TokenRejected(invalid, f"malformed claims ({exc})") from None
    iss = unverified.get("iss")
    if not isinstance(kid, str) or not isinstance(iss, str):
        raise TokenRejected(invalid, "the token needs a kid header and an iss claim")
    public = keys.get((iss, kid))
    if public is None:
        raise TokenRejected(invalid, f"no key {kid!r} is registered for team {iss!r}")
    try:
        claims = jwt.decode(
            token,
            public,
            algorithms=["ES256"],
            # The clock is ours (``now``), not PyJWT's: its time checks are off.
            options={"verify_iat": False, "verify_exp": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        raise TokenRejected(invalid, f"signature or claims do not verify ({exc})") from None
    iat = claims.get("iat")
    if type(iat) is not int:
        raise TokenRejected(invalid, f"iat {iat!r} is not whole UNIX seconds")
    if iat > now + 60:
        raise TokenRejected(invalid, f"iat {iat} is in the future (now {now})")
    if now - iat > max_age:
        raise TokenRejected(
            Reason.EXPIRED_PROVIDER_TOKEN, f"iat {iat} is {now - iat} s old; the limit is {max_age}"
        )
    return VerifiedToken(team_id=iss, key_id=kid, issued_at=iat)


def _der_signature_to_raw(token: str) -> str:
    """``token`` with a DER-encoded ECDSA signature rewritten as JWS's raw R||S.

    APNs accepts both (HTTP2.md 2: Java's SHA256withECDSA, as Pushy signs, gives DER,
    and so does Apple's own sample token); PyJWT checks only the raw form. Anything
    that is not a DER signature comes back unchanged, for PyJWT to judge.
    """
    head, dot, signature = token.rpartition(".")
    if not dot:
        return token
    try:
        der = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except (ValueError, TypeError):
        return token
    if len(der) == 64 or not der.startswith(b"\x30"):
        return token
    try:
        r, s = decode_dss_signature(der)
    except ValueError:
        return token
    if r.bit_length() > 256 or s.bit_length() > 256:
        return token
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{head}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}"


class TokenDecision(enum.Enum):
    """What :meth:`ProviderTokenCache.decide` says to do."""

    #: No token yet: make the first.
    MAKE = "make"
    #: Keep sending the current token.
    REUSE = "reuse"
    #: Replace the current token with a new one.
    REFRESH = "refresh"


@attrs.define
class ProviderTokenCache:
    """One key's current token, replaced by the 50/20-minute rule. Pure: ``now`` is passed in.

    ``stale=True`` says APNs answered ``ExpiredProviderToken``: the token is replaced
    as soon as 20 minutes have passed since it was made (sooner would get
    ``TooManyProviderTokenUpdates``, and a clock that made a stale token just now would
    make another).
    """

    key: ProviderKey
    refresh_after: int = REFRESH_AFTER
    min_interval: int = MIN_REFRESH_INTERVAL
    _current: ProviderToken | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if not 0 < self.min_interval <= self.refresh_after < MAX_TOKEN_AGE:
            raise LocalProtocolError(
                f"token timing must satisfy 0 < min_interval ({self.min_interval}) <= "
                f"refresh_after ({self.refresh_after}) < {MAX_TOKEN_AGE} s"
            )

    @property
    def current(self) -> ProviderToken | None:
        """The token in use, if one was made."""
        return self._current

    def decide(self, now: int, *, stale: bool = False) -> TokenDecision:
        """Whether the token in use can be sent at ``now``."""
        if self._current is None:
            return TokenDecision.MAKE
        age = now - self._current.issued_at
        if age < self.min_interval:
            return TokenDecision.REUSE
        if stale or age >= self.refresh_after:
            return TokenDecision.REFRESH
        return TokenDecision.REUSE

    def token(self, now: int, *, stale: bool = False) -> ProviderToken:
        """The token to send at ``now``: the current one, or a new one per :meth:`decide`."""
        if self.decide(now, stale=stale) is TokenDecision.REUSE:
            assert self._current is not None
            return self._current
        self._current = make_provider_token(self.key, now=now)
        return self._current
