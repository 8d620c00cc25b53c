"""Wallet (PassKit) passes: building and signing, the web service, update pushes.

An application built on the layers below (tls, client); nothing but the CLI imports
it. See README "Wallet passes".
"""

from __future__ import annotations

from ._pkpass import (
    GENERATED_FILES,
    MIN_AUTH_TOKEN_LENGTH,
    PKPASS_MEDIA_TYPE,
    PassError,
    PassSigner,
    PassSource,
    build_pkpass,
    load_wwdr,
    manifest_json,
    read_pass_directory,
)
from ._sample import write_sample_pass
from ._store import (
    MAX_IDENTIFIER_LENGTH,
    PassStore,
    Registration,
    StoredPass,
    UpdatedSerials,
)

__all__ = [
    # passes
    "PassError",
    "PassSource",
    "PassSigner",
    "read_pass_directory",
    "build_pkpass",
    "load_wwdr",
    "manifest_json",
    "write_sample_pass",
    "PKPASS_MEDIA_TYPE",
    "GENERATED_FILES",
    "MIN_AUTH_TOKEN_LENGTH",
    # store
    "PassStore",
    "StoredPass",
    "Registration",
    "UpdatedSerials",
    "MAX_IDENTIFIER_LENGTH",
]
