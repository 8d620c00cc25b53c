"""What a push certificate is for: topic, environments, topics, validity."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ._environment import (
    PASS_TYPE_OID,
    TOPICS_OID,
    Environment,
    certificate_environments,
    certificate_topic,
)

#: A certificate that ends within this period "expires soon".
EXPIRY_WARNING: Final = timedelta(days=30)

_STRING_TAGS: Final = frozenset({0x0C, 0x13, 0x16})  # UTF8String, PrintableString, IA5String


@attrs.frozen(kw_only=True)
class CertificateInfo:
    """A summary of one certificate, as ``apns-legacy cert inspect`` shows it."""

    #: The subject as an RFC 4514 string.
    subject: str
    #: The issuer as an RFC 4514 string.
    issuer: str
    #: Serial number, hex.
    serial: str
    #: SHA-256 fingerprint of the DER certificate, hex.
    sha256: str
    #: Subject UID (the bundle id), or None.
    topic: str | None
    #: Environments granted by Apple's .6.3.1/.6.3.2 extensions.
    environments: frozenset[Environment]
    #: Topics from the .6.3.6 extension; None when absent or unparsable.
    topics: tuple[str, ...] | None
    #: The raw .6.3.6 value in hex when it is present but could not be parsed.
    topics_raw: str | None
    #: Has the Pass Type ID marker (.6.1.16).
    is_pass_type: bool
    not_before: datetime
    not_after: datetime
    expired: bool
    not_yet_valid: bool
    #: Valid now but ends within :data:`EXPIRY_WARNING`.
    expires_soon: bool
    #: Whole days from ``now`` to notAfter (negative once expired).
    days_left: int

    @property
    def is_push_certificate(self) -> bool:
        """Whether anything marks it as an APNs certificate: a subject UID (the topic),
        Apple's environment or topics extensions, or the Pass Type ID marker. A server
        or personal certificate has none of them, and Apple's gateway refuses it."""
        return bool(
            self.topic
            or self.environments
            or self.topics is not None
            or self.topics_raw is not None
            or self.is_pass_type
        )

    @property
    def status(self) -> str:
        """One of ``expired``, ``not yet valid``, ``expires soon``, ``valid``."""
        if self.expired:
            return "expired"
        if self.not_yet_valid:
            return "not yet valid"
        return "expires soon" if self.expires_soon else "valid"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (times as ISO 8601 UTC, environments sorted)."""
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "sha256": self.sha256,
            "topic": self.topic,
            "environments": sorted(env.value for env in self.environments),
            "topics": None if self.topics is None else list(self.topics),
            "topics_raw": self.topics_raw,
            "is_pass_type": self.is_pass_type,
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "expired": self.expired,
            "not_yet_valid": self.not_yet_valid,
            "expires_soon": self.expires_soon,
            "days_left": self.days_left,
            "status": self.status,
            "push_certificate": self.is_push_certificate,
        }

    def to_json(self) -> str:
        """One line of JSON with the fields of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_text(self) -> str:
        """Aligned, human-readable lines (no trailing newline)."""
        if self.topics is not None:
            topics = ", ".join(self.topics) or "(empty)"
        elif self.topics_raw is not None:
            topics = f"(unparsed) {self.topics_raw}"
        else:
            topics = "-"
        environments = ", ".join(sorted(env.value for env in self.environments)) or "none"
        if self.expired:
            status = f"EXPIRED {-self.days_left} days ago"
        elif self.not_yet_valid:
            status = "NOT YET VALID"
        elif self.expires_soon:
            status = f"valid, EXPIRES SOON (in {self.days_left} days)"
        else:
            status = f"valid ({self.days_left} days left)"
        rows = [
            ("Subject", self.subject),
            ("Issuer", self.issuer),
            ("Topic", self.topic or "-"),
            ("Environments", environments),
            ("Topics", topics),
            ("Pass type", "yes" if self.is_pass_type else "no"),
            ("Not before", _iso(self.not_before)),
            ("Not after", _iso(self.not_after)),
            ("Status", status),
            ("Serial", self.serial),
            ("SHA-256", self.sha256),
        ]
        return "\n".join(f"{label + ':':<14}{value}" for label, value in rows)


def inspect_certificate(
    certificate: x509.Certificate, *, now: datetime | None = None
) -> CertificateInfo:
    """Summarize ``certificate`` as of ``now`` (default: the current time, UTC).

    Args:
        certificate: any X.509 certificate; Apple-specific fields are empty when
            the extensions are absent.
        now: an aware datetime to judge validity against.

    Returns:
        The summary.
    """
    now = datetime.now(UTC) if now is None else now
    not_before = certificate.not_valid_before_utc
    not_after = certificate.not_valid_after_utc
    topics: tuple[str, ...] | None = None
    topics_raw: str | None = None
    is_pass_type = False
    try:
        extensions = list(certificate.extensions)
    except ValueError:  # malformed extensions: report what the subject says
        extensions = []
    for extension in extensions:
        if extension.oid == TOPICS_OID:
            raw = _extension_bytes(extension)
            topics = parse_topics_extension(raw)
            if topics is None:
                topics_raw = raw.hex()
        elif extension.oid == PASS_TYPE_OID:
            is_pass_type = True
    expired = now > not_after
    not_yet_valid = now < not_before
    return CertificateInfo(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        serial=format(certificate.serial_number, "x"),
        sha256=certificate.fingerprint(hashes.SHA256()).hex(),
        topic=certificate_topic(certificate),
        environments=certificate_environments(certificate) if extensions else frozenset(),
        topics=topics,
        topics_raw=topics_raw,
        is_pass_type=is_pass_type,
        not_before=not_before,
        not_after=not_after,
        expired=expired,
        not_yet_valid=not_yet_valid,
        expires_soon=not expired and not not_yet_valid and not_after - now < EXPIRY_WARNING,
        days_left=(not_after - now).days,
    )


def parse_topics_extension(value: bytes) -> tuple[str, ...] | None:
    """The topic strings in a .6.3.6 value, or None if it is not the expected shape.

    Apple's layout: SEQUENCE { UTF8String topic, SEQUENCE { UTF8String kind ... },
    ... } where the inner sequences (``app``, ``voip``, ``complication``) describe
    the topic before them. Unknown shapes return None rather than guessing.
    """
    try:
        tag, body, end = _read_tlv(value, 0)
        if tag != 0x30 or end != len(value):
            return None
        topics: list[str] = []
        position = 0
        while position < len(body):
            tag, content, position = _read_tlv(body, position)
            if tag in _STRING_TAGS:
                topics.append(content.decode("utf-8"))
            elif tag != 0x30:
                return None
        return tuple(topics)
    except (ValueError, UnicodeDecodeError):
        return None


def _read_tlv(data: bytes, position: int) -> tuple[int, bytes, int]:
    """One DER tag-length-value at ``position``: (tag, content, next position)."""
    if position + 2 > len(data):
        raise ValueError("truncated DER header")
    tag = data[position]
    length = data[position + 1]
    position += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or position + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[position : position + count], "big")
        position += count
    end = position + length
    if end > len(data):
        raise ValueError("truncated DER value")
    return tag, data[position:end], end


def _extension_bytes(extension: x509.Extension[x509.ExtensionType]) -> bytes:
    value = extension.value
    if isinstance(value, x509.UnrecognizedExtension):
        return value.value
    return value.public_bytes()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
