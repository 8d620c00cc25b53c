"""Wallet (PassKit) passes: building and signing, the web service, update pushes.

An application built on the layers below (tls, client); nothing but the CLI imports
it. See README "Wallet passes".

The web service needs Starlette and Hypercorn (the ``wallet`` extra:
``pip install 'apns-legacy[wallet]'``). They are imported only when one of the web
names is used, so building passes and pushing updates work without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._config import ROUTES, ConfigError, WalletConfig, parse_listen
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
    PassFeedbackResult,
    PassStore,
    Registration,
    StoredPass,
    UpdatedSerials,
)
from ._tls import WebTLS
from ._update import (
    DEFAULT_PUSH_EXPIRY,
    BinaryGateway,
    Http2Gateway,
    PushReport,
    UpdateResult,
    changed_passes,
    pass_directories,
    prune_from_feedback,
    publish_pass,
    push_pass_update,
    read_pass_feedback,
    read_pass_folder,
    update_pass,
)

if TYPE_CHECKING:
    from ._server import WalletServer, open_wallet_server
    from ._web import MAX_BODY, WalletService

# Names from modules that need the ``wallet`` extra, imported on first use (PEP 562).
_WEB_NAMES = {
    "WalletService": "_web",
    "MAX_BODY": "_web",
    "WalletServer": "_server",
    "open_wallet_server": "_server",
}


def __getattr__(name: str) -> Any:
    module = _WEB_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    except ImportError as exc:
        raise ImportError(
            f"{name} needs the web service packages ({exc.name}): pip install 'apns-legacy[wallet]'"
        ) from exc
    globals()[name] = value
    return value


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
    "PassFeedbackResult",
    "StoredPass",
    "Registration",
    "UpdatedSerials",
    "MAX_IDENTIFIER_LENGTH",
    # updates
    "BinaryGateway",
    "Http2Gateway",
    "PushReport",
    "UpdateResult",
    "publish_pass",
    "push_pass_update",
    "update_pass",
    "read_pass_feedback",
    "prune_from_feedback",
    "pass_directories",
    "read_pass_folder",
    "changed_passes",
    "DEFAULT_PUSH_EXPIRY",
    # configuration
    "WalletConfig",
    "ConfigError",
    "parse_listen",
    "ROUTES",
    # web service
    "WebTLS",
    "WalletService",
    "WalletServer",
    "open_wallet_server",
    "MAX_BODY",
]
