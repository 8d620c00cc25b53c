"""The README's "Wallet passes" TOML examples are configurations ``WalletConfig.load``
accepts, with the routes and keys they say (the Python examples run in test_readme)."""

from __future__ import annotations

import re
from pathlib import Path

from apns_legacy.wallet import WalletConfig

README = Path(__file__).resolve().parent.parent / "README.md"


def wallet_toml_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Wallet passes\n")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```toml\n(.*?)```", text[start:end], flags=re.DOTALL)


def test_the_wallet_toml_examples_load(tmp_path):
    full, http2, bridge = wallet_toml_blocks()
    top = full[: full.index("[push]")]  # the [push] examples go below the same top part
    loaded = []
    for number, block in enumerate((full, top + http2, top + bridge)):
        path = tmp_path / f"wallet{number}.toml"
        path.write_text(block, encoding="utf-8")
        loaded.append(WalletConfig.load(path))
    binary, token, through_bridge = loaded
    assert (binary.route, binary.gateway_host, binary.gateway_port) == (
        "binary",
        "gateway.push.apple.com",
        2195,
    )
    assert (token.route, token.gateway_host, token.gateway_port) == (
        "http2",
        "api.push.apple.com",
        443,
    )
    assert (token.key_id, token.team_id) == ("ABC123DEFG", "DEF123GHIJ")
    assert token.auth_key == tmp_path / "AuthKey_ABC123DEFG.p8"
    assert (through_bridge.route, through_bridge.gateway_host, through_bridge.gateway_port) == (
        "bridge",
        "bridge.internal",
        2195,
    )
    assert (through_bridge.feedback_host, through_bridge.feedback_port) == ("bridge.internal", 2196)
    assert through_bridge.push_cert == tmp_path / "bridge-client.p12"
    assert through_bridge.push_passphrase_env == "BRIDGE_P12_PASS"
