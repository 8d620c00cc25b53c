"""APNs environments and the Apple certificate extensions that name them (PROTOCOL.md §9)."""

from __future__ import annotations

import enum
from typing import Final

from cryptography import x509

#: Subject UID attribute: the topic (bundle id) of a push certificate.
UID_OID: Final = x509.ObjectIdentifier("0.9.2342.19200300.100.1.1")
#: APNs development (sandbox) client certificate extension.
SANDBOX_OID: Final = x509.ObjectIdentifier("1.2.840.113635.100.6.3.1")
#: APNs production client certificate extension.
PRODUCTION_OID: Final = x509.ObjectIdentifier("1.2.840.113635.100.6.3.2")
#: List of topics (universal certificates): bundle id, `<id>.voip`, `<id>.complication`.
TOPICS_OID: Final = x509.ObjectIdentifier("1.2.840.113635.100.6.3.6")
#: Pass Type ID (Wallet) certificate marker.
PASS_TYPE_OID: Final = x509.ObjectIdentifier("1.2.840.113635.100.6.1.16")


class Environment(enum.Enum):
    """The APNs environment a certificate may push to.

    Apple marks push certificates with one extension per environment; a universal
    certificate ("Apple Push Services: ...") carries both.
    """

    #: The development gateway (Apple calls it "development"), OID 1.2.840.113635.100.6.3.1.
    SANDBOX = "sandbox"
    #: The production gateway, OID 1.2.840.113635.100.6.3.2.
    PRODUCTION = "production"

    @property
    def oid(self) -> x509.ObjectIdentifier:
        """The certificate extension OID that grants this environment."""
        return SANDBOX_OID if self is Environment.SANDBOX else PRODUCTION_OID

    @classmethod
    def parse(cls, text: str) -> Environment:
        """Parse ``sandbox``/``development`` or ``production`` (case-insensitive).

        Raises:
            ValueError: for any other text.
        """
        name = text.strip().lower()
        if name in ("sandbox", "development"):
            return cls.SANDBOX
        if name == "production":
            return cls.PRODUCTION
        raise ValueError(f"unknown environment {text!r}: expected sandbox or production")


ALL_ENVIRONMENTS: Final = frozenset(Environment)


def certificate_environments(certificate: x509.Certificate) -> frozenset[Environment]:
    """The environments whose Apple extension OIDs appear in ``certificate``."""
    present = {ext.oid for ext in certificate.extensions}
    return frozenset(env for env in Environment if env.oid in present)


def certificate_topic(certificate: x509.Certificate) -> str | None:
    """The subject UID (the topic / bundle id), or None when the subject has none."""
    for attribute in certificate.subject.get_attributes_for_oid(UID_OID):
        value = attribute.value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None
