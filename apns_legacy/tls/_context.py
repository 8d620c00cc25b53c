"""pyOpenSSL contexts for the provider (client) and the simulator (server).

Each context is built once, completely, and then only used: pyOpenSSL 26.2+ raises
if a context is changed after a connection has used it. Certificates and keys are
passed as ``cryptography`` objects (pyOpenSSL's own ``X509``/``PKey`` arguments and
``set_passwd_cb`` are deprecated); the one exception is the trust store, whose
``add_cert`` only takes pyOpenSSL ``X509`` objects, made with
``X509.from_cryptography``. No file is written or read for keys.

Host name checking is not done here: pyOpenSSL has none built in, so
:class:`~apns_legacy.tls.TLSStream` checks the server certificate's SAN itself
after the handshake.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from cryptography import x509
from OpenSSL import SSL, crypto

from ._credentials import Credentials

if TYPE_CHECKING:
    # pyOpenSSL's type for its NO_OVERLAPPING_PROTOCOLS sentinel (the ALPN callback's
    # "none of yours" answer); it has no public name.
    from OpenSSL.SSL import _NoOverlappingProtocols as _NoOverlap
from ._errors import UnreadableCredentialsError

# OpenSSL's SSL_MODE_ENABLE_PARTIAL_WRITE and SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
# (ssl.h; pyOpenSSL sets both in every new Context but does not export the names).
# A moving buffer lets TLSStream retry an interrupted write with a new memoryview
# of the same bytes. Partial writes (SSL_write returning after each 16 KiB record)
# buy nothing with memory BIOs, which never block, and cost time: one SSL_write of
# 64 KiB took 16 us against 23 us for four partial ones (OpenSSL 3.0, this
# machine), so we switch them off. TLSStream still loops, in case one is cut short.
_MODE_ENABLE_PARTIAL_WRITE: Final = 0x1
_MODE_ACCEPT_MOVING_WRITE_BUFFER: Final = 0x2

_SESSION_ID_CONTEXT: Final = b"apns-legacy"

_CODES = SSL.X509VerificationCodes
#: Plain descriptions of the verification failures people actually hit.
_VERIFY_REASONS: Final[dict[int, str]] = {
    _CODES.ERR_CERT_HAS_EXPIRED: "the certificate has expired",
    _CODES.ERR_CERT_NOT_YET_VALID: "the certificate is not yet valid",
    _CODES.ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "it was issued by a CA that is not trusted",
    _CODES.ERR_UNABLE_TO_GET_ISSUER_CERT: "its issuer certificate is missing",
    _CODES.ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: "the first certificate cannot be verified "
    "(missing intermediate or untrusted CA)",
    _CODES.ERR_DEPTH_ZERO_SELF_SIGNED_CERT: "it is self-signed and not trusted",
    _CODES.ERR_SELF_SIGNED_CERT_IN_CHAIN: "its chain ends in an untrusted self-signed root",
    _CODES.ERR_CERT_SIGNATURE_FAILURE: "its signature is invalid",
    _CODES.ERR_CERT_REVOKED: "it has been revoked",
    _CODES.ERR_INVALID_CA: "an issuer in its chain is not a CA",
    _CODES.ERR_INVALID_PURPOSE: "its extended key usage does not allow this use",
}


class VerifyLog:
    """Per-connection record of certificate verification failures.

    The verify callback lives on the (shared) context; it finds the connection's
    log through ``Connection.get_app_data()``, which TLSStream sets.
    """

    __slots__ = ("failures",)

    def __init__(self) -> None:
        self.failures: list[str] = []


def _verify_callback(
    connection: SSL.Connection, certificate: crypto.X509, code: int, depth: int, ok: int
) -> bool:
    # Keep OpenSSL's verdict; only remember why it failed, for the error message.
    if not ok:
        log = connection.get_app_data()
        if isinstance(log, VerifyLog):
            reason = _VERIFY_REASONS.get(code, f"OpenSSL verify error {code}")
            subject = certificate.to_cryptography().subject.rfc4514_string()
            log.failures.append(f"{reason} (certificate {subject!r}, depth {depth})")
    return bool(ok)


def client_context(
    credentials: Credentials | None,
    *,
    ca: bytes | str | os.PathLike[str] | None = None,
    min_version: int = SSL.TLS1_2_VERSION,
    allow_tls13: bool = True,
    alpn: Sequence[bytes] = (),
) -> SSL.Context:
    """A context for connecting to a gateway or feedback service.

    Args:
        credentials: the client certificate to present (None: present none).
        ca: PEM trust anchors for the server certificate, as bytes or a file path.
            None: the system's default trust store.
        min_version: lowest TLS version (an ``OpenSSL.SSL.TLS1_*_VERSION``).
        allow_tls13: False caps the connection at TLS 1.2.
        alpn: ALPN protocols to offer, in order of preference (``[b"h2"]`` for the
            HTTP/2 provider API); empty: no ALPN extension.

    Returns:
        A finished context; do not change it afterwards.

    Raises:
        UnreadableCredentialsError: ``ca`` is missing or holds no PEM certificate.
    """
    context = _base_context(SSL.TLS_CLIENT_METHOD, min_version, allow_tls13)
    if alpn:
        context.set_alpn_protos(list(alpn))
    if credentials is not None:
        _use_credentials(context, credentials)
    if ca is None:
        context.set_default_verify_paths()
    else:
        _trust(context, read_pem_certificates(ca, "CA bundle"))
    context.set_verify(SSL.VERIFY_PEER, _verify_callback)
    return context


def server_context(
    credentials: Credentials,
    *,
    client_ca: x509.Certificate | Sequence[x509.Certificate] | bytes | str | os.PathLike[str],
    allow_tls13: bool = False,
    require_client_certificate: bool = True,
    min_version: int = SSL.TLS1_2_VERSION,
    alpn: Sequence[bytes] = (),
) -> SSL.Context:
    """A context for the simulator's gateway and feedback servers.

    Like Apple's legacy gateway it negotiates at most TLS 1.2 unless
    ``allow_tls13`` is set, and asks for a client certificate verified against
    ``client_ca``.

    Args:
        credentials: the server certificate, key and chain.
        client_ca: the CA(s) client certificates must chain to: certificate
            objects, PEM bytes, or a PEM file path.
        allow_tls13: also offer TLS 1.3.
        require_client_certificate: fail the handshake when the client presents
            no certificate (a presented certificate is always verified).
        min_version: lowest TLS version.
        alpn: ALPN protocols the server speaks, in order of preference; the first
            of them the client offers is selected. A client offering none of them
            (or no ALPN at all) still connects, with no protocol selected, and the
            server decides what to do (``TLSStream.alpn_protocol`` is None).

    Returns:
        A finished context; do not change it afterwards.

    Raises:
        UnreadableCredentialsError: ``client_ca`` holds no PEM certificate.
    """
    context = _base_context(SSL.TLS_SERVER_METHOD, min_version, allow_tls13)
    if alpn:
        context.set_alpn_select_callback(_alpn_selector(tuple(alpn)))
    _use_credentials(context, credentials)
    if isinstance(client_ca, x509.Certificate):
        authorities: Sequence[x509.Certificate] = [client_ca]
    elif isinstance(client_ca, bytes | str | os.PathLike):
        authorities = read_pem_certificates(client_ca, "client CA bundle")
    else:
        authorities = client_ca
    _trust(context, authorities)
    for authority in authorities:
        # Named in the CertificateRequest, so clients with several identities
        # (openssl s_client, browsers) can pick the right one.
        context.add_client_ca(authority)
    mode = SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE
    if require_client_certificate:
        mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    context.set_verify(mode, _verify_callback)
    # Needed whenever client certificates are verified, or a client that offers
    # session resumption gets "session id context uninitialized".
    context.set_session_id(_SESSION_ID_CONTEXT)
    return context


def _alpn_selector(
    ours: tuple[bytes, ...],
) -> Callable[[SSL.Connection, list[bytes]], bytes | _NoOverlap]:
    def select(connection: SSL.Connection, offered: list[bytes]) -> bytes | _NoOverlap:
        for protocol in ours:
            if protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS

    return select


def _base_context(method: int, min_version: int, allow_tls13: bool) -> SSL.Context:
    context = SSL.Context(method)
    context.set_min_proto_version(min_version)
    if not allow_tls13:
        context.set_max_proto_version(SSL.TLS1_2_VERSION)
    options = SSL.OP_NO_COMPRESSION
    # Renegotiation is a TLS <= 1.2 feature nobody needs here; refusing it keeps
    # reads and writes one-directional (TLSStream copes with it regardless).
    options |= getattr(SSL, "OP_NO_RENEGOTIATION", 0)
    context.set_options(options)
    context.clear_mode(_MODE_ENABLE_PARTIAL_WRITE)
    context.set_mode(_MODE_ACCEPT_MOVING_WRITE_BUFFER)
    return context


def _use_credentials(context: SSL.Context, credentials: Credentials) -> None:
    context.use_certificate(credentials.certificate)
    for certificate in credentials.chain:
        context.add_extra_chain_cert(certificate)
    context.use_privatekey(credentials.private_key)
    context.check_privatekey()


def _trust(context: SSL.Context, certificates: Sequence[x509.Certificate]) -> None:
    store = context.get_cert_store()
    if store is None:  # pragma: no cover - OpenSSL always creates one
        raise RuntimeError("the OpenSSL context has no certificate store")
    for certificate in certificates:
        store.add_cert(crypto.X509.from_cryptography(certificate))


def read_pem_certificates(
    source: bytes | str | os.PathLike[str], label: str
) -> list[x509.Certificate]:
    """All PEM certificates in ``source`` (data, or a file path used as the label).

    Raises:
        UnreadableCredentialsError: unreadable file or no PEM certificate.
    """
    if isinstance(source, bytes):
        data = source
    else:
        label = os.fspath(source)
        try:
            with open(label, "rb") as file:
                data = file.read()
        except OSError as exc:
            raise UnreadableCredentialsError(f"{label}: cannot read ({exc.strerror})") from None
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise UnreadableCredentialsError(f"{label}: no PEM certificate found") from None
