"""A small valid pass directory, for the README, tests and trying things out."""

from __future__ import annotations

import json
import os
import secrets
import struct
import zlib
from pathlib import Path
from typing import Any


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour 8-bit RGB PNG (signature, IHDR, one IDAT, IEND; RFC 2083)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack("!I", len(body)) + kind + body + struct.pack("!I", crc)

    row = b"\x00" + bytes(rgb) * width  # filter type 0 (None) before each row
    header = struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def write_sample_pass(
    directory: str | os.PathLike[str],
    *,
    pass_type_id: str,
    serial_number: str,
    team_id: str,
    authentication_token: str | None = None,
    web_service_url: str | None = None,
    balance: str = "0.00",
    organization_name: str = "Example Coffee",
) -> Path:
    """Write a store card pass directory (``pass.json``, ``icon.png``, ``icon@2x.png``).

    Args:
        directory: created if missing; existing files with the same names are replaced.
        pass_type_id: ``passTypeIdentifier`` (the certificate's subject UID).
        serial_number: ``serialNumber``.
        team_id: ``teamIdentifier`` (the certificate's OU).
        authentication_token: default: 32 random hex characters.
        web_service_url: ``webServiceURL`` (without ``/v1``); omitted when None.
        balance: the value of the card's primary field.
        organization_name: ``organizationName``.

    Returns:
        The directory.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    pass_json: dict[str, Any] = {
        "formatVersion": 1,
        "passTypeIdentifier": pass_type_id,
        "serialNumber": serial_number,
        "teamIdentifier": team_id,
        "organizationName": organization_name,
        "description": f"{organization_name} card",
        "authenticationToken": authentication_token or secrets.token_hex(16),
        "storeCard": {
            "primaryFields": [
                {
                    "key": "balance",
                    "label": "Balance",
                    "value": balance,
                    "changeMessage": "Your balance is now %@",
                }
            ]
        },
    }
    if web_service_url is not None:
        pass_json["webServiceURL"] = web_service_url
    (folder / "pass.json").write_text(json.dumps(pass_json, indent=2) + "\n", encoding="utf-8")
    (folder / "icon.png").write_bytes(_png(29, 29, (0x6F, 0x4E, 0x37)))
    (folder / "icon@2x.png").write_bytes(_png(58, 58, (0x6F, 0x4E, 0x37)))
    return folder
