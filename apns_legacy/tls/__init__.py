"""The TLS layer: credentials in memory, pyOpenSSL contexts, a trio stream.

``Credentials`` load PEM, encrypted PEM and PKCS#12 without temporary files;
``client_context``/``server_context`` build pyOpenSSL contexts once;
``TLSStream`` runs TLS over any trio stream with pyOpenSSL memory BIOs;
``make_test_pki`` makes throwaway certificates shaped like Apple's.
"""

from __future__ import annotations

from ._connect import TLSSessionCache, open_tls_stream
from ._context import client_context, read_pem_certificates, server_context
from ._credentials import Credentials, PrivateKey, check_validity
from ._environment import (
    PASS_TYPE_OID,
    PRODUCTION_OID,
    SANDBOX_OID,
    TOPICS_OID,
    UID_OID,
    Environment,
    certificate_environments,
    certificate_topic,
)
from ._errors import (
    CertificateExpiredError,
    CertificateNotYetValidError,
    CredentialsError,
    KeyMismatchError,
    TLSHandshakeError,
    UnreadableCredentialsError,
    WrongPassphraseError,
)
from ._inspect import EXPIRY_WARNING, CertificateInfo, inspect_certificate, parse_topics_extension
from ._stream import RECEIVE_SIZE, TLSStream
from ._testpki import PKI_FILES, TestPKI, make_test_pki

__all__ = [
    # credentials
    "Environment",
    "Credentials",
    "PrivateKey",
    "check_validity",
    "CredentialsError",
    "UnreadableCredentialsError",
    "WrongPassphraseError",
    "KeyMismatchError",
    "CertificateExpiredError",
    "CertificateNotYetValidError",
    "UID_OID",
    "SANDBOX_OID",
    "PRODUCTION_OID",
    "TOPICS_OID",
    "PASS_TYPE_OID",
    "certificate_environments",
    "certificate_topic",
    # contexts and streams
    "client_context",
    "server_context",
    "read_pem_certificates",
    "TLSStream",
    "TLSHandshakeError",
    "open_tls_stream",
    "TLSSessionCache",
    "RECEIVE_SIZE",
    # inspection
    "CertificateInfo",
    "inspect_certificate",
    "parse_topics_extension",
    "EXPIRY_WARNING",
    # test PKI
    "TestPKI",
    "make_test_pki",
    "PKI_FILES",
]
