"""Plain-words diagnosis for TLS failures, and the host name check.

OpenSSL reports failures as reason strings ("certificate verify failed",
"tlsv1 alert unknown ca"); this module turns them into one sentence saying which
side rejected what. pyOpenSSL has no host name check, so it is done here against
the certificate's subject alternative names (RFC 6125; the common name is not
used, as in Python's ssl module).
"""

from __future__ import annotations

import ipaddress
from typing import Final

from cryptography import x509
from OpenSSL import SSL


def openssl_reasons(error: SSL.Error) -> list[str]:
    """The OpenSSL reason strings in ``error`` (pyOpenSSL: a list of (lib, func, reason))."""
    if isinstance(error, SSL.SysCallError):
        return [str(part) for part in error.args[1:2]]
    reasons: list[str] = []
    for entry in error.args[0] if error.args and isinstance(error.args[0], list) else []:
        if isinstance(entry, tuple) and entry:
            reasons.append(str(entry[-1]))
    return reasons


_CERTIFICATE_ALERTS: Final = (
    "alert unknown ca",
    "alert bad certificate",
    "alert certificate expired",
    "alert certificate required",
    "alert certificate unknown",
    "alert certificate revoked",
    "alert unsupported certificate",
    "alert handshake failure",
)


def is_certificate_alert(error: SSL.Error) -> bool:
    # Under TLS 1.3 the client finishes its handshake before the server has
    # checked the client certificate, so a rejection arrives as an alert on the
    # client's first read. It is still a handshake failure for the user.
    reasons = openssl_reasons(error)
    return any(alert in reason for reason in reasons for alert in _CERTIFICATE_ALERTS)


def describe_failure(
    error: SSL.Error, *, during_handshake: bool, server_side: bool, verify_failures: list[str]
) -> str:
    """One sentence: which side rejected what (``verify_failures`` from the VerifyLog)."""
    peer = "client" if server_side else "server"
    if during_handshake:
        prefix = "TLS handshake failed"
    elif is_certificate_alert(error):
        prefix = "TLS handshake failed (reported after it completed, as TLS 1.3 does)"
    else:
        prefix = "TLS connection failed"
    text = "; ".join(openssl_reasons(error)) or type(error).__name__
    if isinstance(error, SSL.SysCallError):
        if during_handshake:
            return f"{prefix}: the {peer} closed the connection during the handshake"
        return f"{prefix}: the {peer} closed the connection without a TLS close_notify ({text})"
    if "certificate verify failed" in text:
        why = verify_failures[0] if verify_failures else "verification failed"
        return f"{prefix}: the {peer} certificate is not trusted: {why}"
    if "peer did not return a certificate" in text:
        return f"{prefix}: the client presented no certificate, and one is required"
    if "alert certificate required" in text:
        return f"{prefix}: the server requires a client certificate, and none was presented"
    if "alert unknown ca" in text:
        return f"{prefix}: the {peer} does not trust our certificate's issuer (alert: unknown CA)"
    if "alert certificate expired" in text:
        return f"{prefix}: the {peer} rejected our certificate as expired"
    if "alert handshake failure" in text and not server_side:
        return (
            f"{prefix}: the server refused the handshake (alert: handshake failure); "
            "it may require a client certificate or share no cipher with us"
        )
    if "alert" in text and "certificate" in text:
        return f"{prefix}: the {peer} rejected our certificate ({text})"
    if any(word in text for word in ("protocol version", "unsupported protocol", "no protocols")):
        return f"{prefix}: no TLS version in common with the {peer} ({text})"
    if "wrong version number" in text or "packet length too long" in text:
        return f"{prefix}: the {peer} does not speak TLS ({text})"
    return f"{prefix}: {text}"


def ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def idna(host: str) -> str:
    host = host.rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def hostname_problem(certificate: x509.Certificate | None, host: str) -> str | None:
    """None if ``certificate`` is valid for ``host``, else what is wrong."""
    if certificate is None:
        return "the server presented no certificate"
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (
            f"the server certificate has no subject alternative names, so it is not "
            f"valid for {host!r}"
        )
    address = ip_address(host)
    dns_names = san.get_values_for_type(x509.DNSName)
    ip_names = san.get_values_for_type(x509.IPAddress)
    if address is not None:
        if address in ip_names:
            return None
    else:
        wanted = idna(host)
        if any(_dns_name_matches(pattern, wanted) for pattern in dns_names):
            return None
    names = [f"DNS:{name}" for name in dns_names] + [f"IP:{ip}" for ip in ip_names]
    return (
        f"the server certificate is not valid for {host!r} "
        f"(it names {', '.join(names) or 'nothing usable'})"
    )


def _dns_name_matches(pattern: str, host: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if pattern == host:
        return True
    # RFC 6125 6.4.3, the strict form: "*" as the whole left-most label only,
    # matching exactly one label, and never directly under a public suffix-ish
    # single label ("*.com").
    if pattern.startswith("*.") and "*" not in pattern[2:] and "." in pattern[2:]:
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return False
