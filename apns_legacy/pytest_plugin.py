"""pytest fixtures for testing your own APNs code against the simulator.

Installed with ``pip install 'apns-legacy[testing]'`` and loaded by pytest on its own
(entry point ``pytest11``); nothing to copy into a ``conftest.py``. The async fixture
needs pytest-trio: ``trio_mode = true`` in the pytest configuration, or
``@pytest.mark.trio`` on the test.

* ``apns_pki``: a throwaway CA, server certificate and client (push) certificate, in
  memory, for the session; the client certificate allows both environments.
* ``apns_simulator``: a running simulator (gateway and feedback service) on 127.0.0.1
  with free ports, using ``apns_pki``; ``sim.client_context()`` connects to it.
* ``apns_cert_files``: ``apns_pki`` written to a temporary directory, as a dict of
  file name to path (``ca.pem``, ``client.pem``, ``client-key.pem``, ``client.p12``,
  ...), for code that loads certificates from files.
* ``apns_p12_passphrase``: the passphrase of ``client.p12`` (default
  ``b"apns-legacy-test"``; override the fixture to choose another).
* ``apns_provider_key``: a throwaway token-signing key (``ProviderKey``, team id
  ``TEAM123456``, key id ``KEY1234567``) for the session.
* ``apns_http2_simulator``: a running HTTP/2 APNs simulator on 127.0.0.1 (free port)
  using ``apns_pki``, accepting tokens signed by ``apns_provider_key``.

For other simulator settings, call ``open_simulator(pki=apns_pki, ...)`` in the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from .h2wire import ProviderKey
from .simulator import (
    Http2Simulator,
    Http2SimulatorConfig,
    Simulator,
    open_http2_simulator,
    open_simulator,
)
from .tls import TestPKI, make_test_pki


@pytest.fixture(scope="session")
def apns_pki() -> TestPKI:
    """Throwaway certificates for the session (everything in memory)."""
    return make_test_pki()


@pytest.fixture
async def apns_simulator(apns_pki: TestPKI) -> AsyncIterator[Simulator]:
    """A simulator on 127.0.0.1 (free ports) for one test."""
    async with open_simulator(pki=apns_pki) as sim:
        yield sim


@pytest.fixture
def apns_p12_passphrase() -> bytes:
    """The passphrase ``apns_cert_files`` gives ``client.p12``."""
    return b"apns-legacy-test"


@pytest.fixture
def apns_cert_files(
    apns_pki: TestPKI, apns_p12_passphrase: bytes, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """``apns_pki`` as files in a temporary directory (keys unencrypted, mode 0600)."""
    return apns_pki.write(tmp_path_factory.mktemp("apns-certs"), p12_passphrase=apns_p12_passphrase)


@pytest.fixture(scope="session")
def apns_provider_key() -> ProviderKey:
    """A throwaway ES256 token-signing key for the session."""
    return ProviderKey(
        key_id="KEY1234567",
        team_id="TEAM123456",
        private_key=ec.generate_private_key(ec.SECP256R1()),
    )


@pytest.fixture
async def apns_http2_simulator(
    apns_pki: TestPKI, apns_provider_key: ProviderKey
) -> AsyncIterator[Http2Simulator]:
    """An HTTP/2 APNs simulator on 127.0.0.1 (free port) for one test."""
    key = apns_provider_key
    config = Http2SimulatorConfig(provider_keys={(key.team_id, key.key_id): key.public_key})
    async with open_http2_simulator(config, pki=apns_pki) as sim:
        yield sim
