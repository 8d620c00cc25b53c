"""Wallet figures on this machine: signing, the web service, and an update push.

    python bench/wallet.py                 # 200 builds, 2,000 requests, 5,000 devices
    python bench/wallet.py --quick         # a smoke run (tests/test_wallet_bench_smoke.py)

1. ``build_pkpass`` of the sample pass (3 files): passes signed per second (EC P-256
   test key; Apple's RSA-2048 keys sign more slowly).
2. The web service (Hypercorn + Starlette on 127.0.0.1), loaded by a client in another
   process (stdlib ``http.client``, ``--concurrency`` keep-alive connections):
   latest-pass requests with If-Modified-Since (304) and without (200, the archive),
   and serial-number queries. Both share the machine's cores.
3. ``update_pass`` for one pass registered on ``--devices`` devices: rebuild, sign, and
   push ``{"aps":{}}`` to every device through the binary simulator (production), then
   the same through the HTTP/2 simulator with token auth and with certificate auth (one
   connection); each simulator's record is checked against the registrations.

Everything stays on loopback; every loop is bounded in count and time (``--deadline``).
Prints a table and, with ``--output``, writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio
from cryptography.hazmat.primitives.asymmetric import ec

from apns_legacy.h2wire import ProviderKey
from apns_legacy.simulator import Http2SimulatorConfig, open_http2_simulator, open_simulator
from apns_legacy.tls import Environment, TestPKI, make_test_pki
from apns_legacy.wallet import (
    BinaryGateway,
    Http2Gateway,
    PassSigner,
    PassStore,
    UpdateResult,
    build_pkpass,
    open_wallet_server,
    publish_pass,
    read_pass_directory,
    update_pass,
    write_sample_pass,
)

PASS_TYPE = "pass.com.example.bench"
AUTH = "bench-token-0123456789abcdef"


def _signer() -> tuple[TestPKI, PassSigner]:
    pki = make_test_pki(environments=[Environment.PRODUCTION])
    wwdr = pki.issue_intermediate()
    credentials = pki.issue_client(
        topic=PASS_TYPE, pass_type=True, environments=[Environment.PRODUCTION], issuer=wwdr
    )
    return pki, PassSigner.create(credentials, wwdr.certificate)


def bench_build(signer: PassSigner, folder: Path, n: int) -> dict[str, Any]:
    source = read_pass_directory(folder)
    start = time.perf_counter()
    for _ in range(n):
        build_pkpass(source, signer)
    elapsed = time.perf_counter() - start
    return {"case": "build_pkpass", "n": n, "seconds": elapsed, "per_second": n / elapsed}


# The load client runs in its own process (stdlib http.client, one keep-alive connection
# per thread), so the figures are the server's, not shared with a client in its loop.
_CLIENT = """
import http.client, json, sys, threading, time
spec = json.loads(sys.argv[1])
counts, lock = {}, threading.Lock()
def work(k):
    connection = http.client.HTTPConnection(spec["host"], spec["port"], timeout=30)
    for _ in range(k):
        connection.request("GET", spec["path"], headers=spec["headers"])
        response = connection.getresponse()
        response.read()
        with lock:
            counts[response.status] = counts.get(response.status, 0) + 1
    connection.close()
per, extra = divmod(spec["n"], spec["concurrency"])
threads = [threading.Thread(target=work, args=(per + (i < extra),))
           for i in range(spec["concurrency"])]
start = time.perf_counter()
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"seconds": time.perf_counter() - start, "counts": counts}))
"""


async def _load(spec: dict[str, Any], expected: int) -> float:
    done = await trio.run_process(
        [sys.executable, "-c", _CLIENT, json.dumps(spec)], capture_stdout=True
    )
    result = json.loads(done.stdout)
    if result["counts"] != {str(expected): spec["n"]}:
        raise RuntimeError(f"expected {spec['n']} answers {expected}, got {result['counts']}")
    return float(result["seconds"])


async def bench_web(
    store: PassStore, n: int, concurrency: int, deadline: float
) -> list[dict[str, Any]]:
    results = []
    headers = {"Authorization": f"ApplePass {AUTH}"}
    async with open_wallet_server(store) as server:
        host, port = server.address
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            first = await client.get(f"v1/passes/{PASS_TYPE}/S1", headers=headers)
        cached = {**headers, "If-Modified-Since": first.headers["last-modified"]}
        cases = [
            ("GET pass, 200 (archive)", f"/v1/passes/{PASS_TYPE}/S1", headers, 200),
            ("GET pass, 304 (If-Modified-Since)", f"/v1/passes/{PASS_TYPE}/S1", cached, 304),
            ("GET serials since tag 0", f"/v1/devices/dev-0/registrations/{PASS_TYPE}", {}, 200),
        ]
        for name, path, request_headers, expected in cases:
            spec = {
                "host": host,
                "port": port,
                "path": path,
                "headers": request_headers,
                "n": n,
                "concurrency": concurrency,
            }
            with trio.fail_after(deadline):
                elapsed = await _load(spec, expected)
            results.append(
                {
                    "case": name,
                    "n": n,
                    "concurrency": concurrency,
                    "seconds": elapsed,
                    "per_second": n / elapsed,
                }
            )
    return results


async def bench_update(
    pki: TestPKI, signer: PassSigner, store: PassStore, folder: Path, devices: int, deadline: float
) -> list[dict[str, Any]]:
    for i in range(devices):
        store.register(
            device_library_id=f"dev-{i}",
            push_token=i.to_bytes(32, "big"),
            pass_type_id=PASS_TYPE,
            serial_number="S1",
        )
    write_sample_pass(
        folder,
        pass_type_id=PASS_TYPE,
        serial_number="S1",
        team_id="ABCDE12345",
        authentication_token=AUTH,
        balance="2.00",
    )
    source = read_pass_directory(folder)
    async with open_simulator(
        pki=pki, environment=Environment.PRODUCTION, keep_records=True
    ) as sim:
        host, port = sim.gateway_address
        route = BinaryGateway(host=host, port=port, ca=pki.ca_pem())
        start = time.perf_counter()
        with trio.fail_after(deadline):
            result = await update_pass(store, signer, source, route)
        elapsed = time.perf_counter() - start
        recorded = {record.token for record in sim.accepted}
    results = [
        _checked(
            "update_pass: rebuild, sign, push to every device", result, recorded, devices, elapsed
        )
    ]
    key = ProviderKey(
        key_id="KEY1234567",
        team_id="TEAM123456",
        private_key=ec.generate_private_key(ec.SECP256R1()),
    )
    config = Http2SimulatorConfig(provider_keys={(key.team_id, key.key_id): key.public_key})
    for auth, provider_key in (("token", key), ("certificate", None)):
        async with open_http2_simulator(config, pki=pki) as h2sim:
            route2 = Http2Gateway(
                host="127.0.0.1", port=h2sim.port, ca=pki.ca_pem(), provider_key=provider_key
            )
            start = time.perf_counter()
            with trio.fail_after(deadline):
                result = await update_pass(store, signer, source, route2)
            elapsed = time.perf_counter() - start
            recorded = {record.token for record in h2sim.accepted}
        case = f"update_pass over HTTP/2, {auth} auth, 1 connection"
        results.append(_checked(case, result, recorded, devices, elapsed))
    return results


def _checked(
    case: str, result: UpdateResult, recorded: set[str], devices: int, elapsed: float
) -> dict[str, Any]:
    push = result.push
    assert push is not None
    expected = {i.to_bytes(32, "big").hex() for i in range(devices)}
    if push.accepted != devices or recorded != expected:
        raise RuntimeError(
            f"{case}: {push.accepted} accepted, {len(recorded)} recorded of {devices}"
        )
    return {"case": case, "n": devices, "seconds": elapsed, "per_second": devices / elapsed}


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    pki, signer = _signer()
    with tempfile.TemporaryDirectory() as temporary:
        folder = write_sample_pass(
            Path(temporary) / "S1",
            pass_type_id=PASS_TYPE,
            serial_number="S1",
            team_id="ABCDE12345",
            authentication_token=AUTH,
        )
        results = [bench_build(signer, folder, args.builds)]
        with PassStore(Path(temporary) / "wallet.db") as store:
            publish_pass(store, signer, read_pass_directory(folder))
            store.register(
                device_library_id="dev-0",
                push_token=bytes(32),
                pass_type_id=PASS_TYPE,
                serial_number="S1",
            )
            results += await bench_web(store, args.requests, args.concurrency, args.deadline)
            results += await bench_update(pki, signer, store, folder, args.devices, args.deadline)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per case")
    parser.add_argument("--quick", action="store_true", help="tiny counts (a smoke run)")
    parser.add_argument("--output", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    if args.quick:
        args.builds, args.requests, args.devices = 5, 20, 20
    results = trio.run(main_async, args)
    print("| case | n | s | per second |")
    print("|---|---:|---:|---:|")
    for result in results:
        name = result["case"]
        if "concurrency" in result:
            name += f", {result['concurrency']} at a time"
        print(
            f"| {name} | {result['n']:,} | {result['seconds']:.2f} | {result['per_second']:,.0f} |"
        )
    if args.output is not None:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
