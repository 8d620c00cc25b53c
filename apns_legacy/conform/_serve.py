"""``conform serve``: one listener that grades whoever connects (autobahn's fuzzingserver).

Two ways in, both on loopback:

- the shared gateway port: the case is chosen by the first notification's token (the
  workloads in ``<out>/workloads/<case>.jsonl`` carry the case number in every token),
  so a client just sends the workloads one after the other;
- one port per case (h2specd style), needed for the cases that act before any
  notification arrives (wrong environment, TLS certificates, the feedback service).

The client's name comes from its certificate's CN unless ``--agent`` gives one.
Grading is on the wire alone. A case is graded when every line of its workload has
been accounted for and its connections are closed (after ``quiet`` seconds), or at
its deadline counted from its first connection; the case then starts afresh for
the next client.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio
from OpenSSL import SSL

from ..tls import TLSStream
from ..wire import NEED_DATA, GatewayDecoder, ReceivedNotification
from ._catalogue import case_by_number, case_number
from ._gateway import CaseGateway, client_name
from ._grading import grade
from ._model import Case, Expect, Fate, ServerCert, Service, token_case
from ._pki import ConformPKI
from ._results import CaseResult

_FIRST_FRAME_TIMEOUT = 10.0


class _Slot:
    """The current gateway of one case, and the task that grades it."""

    def __init__(self, case: Case, context: SSL.Context) -> None:
        self.case = case
        self.context = context
        self.number = case_number(case)
        self.gateway = CaseGateway(case, self.number, context)
        self.started = trio.Event()
        self.started_at = 0.0


class ConformServer:
    """Serves the chosen cases; calls ``on_result`` with each graded case."""

    def __init__(
        self,
        cases: Sequence[Case],
        pki: ConformPKI,
        on_result: Callable[[CaseResult], None],
        *,
        agent: str | None = None,
        quiet: float = 2.0,
    ) -> None:
        self.pki = pki
        self.contexts = pki.server_contexts()
        self.slots = {
            case.id: _Slot(case, self.contexts[case.script.server_cert]) for case in cases
        }
        self.on_result = on_result
        self.agent = agent
        self.quiet = quiet
        self.ports: dict[str, int] = {}
        self.shared_port = 0

    @staticmethod
    def shared(case: Case) -> bool:
        """Whether the case can be reached through the shared port (by token)."""
        return (
            case.service is Service.GATEWAY
            and case.script.server_cert is ServerCert.TRUSTED
            and not case.script.close_after_handshake
        )

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        case_ports: int | None = None,
        *,
        task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(port, host=host)
            self.shared_port = listeners[0].socket.getsockname()[1]
            await nursery.start(trio.serve_listeners, self._dispatch, listeners)
            for offset, slot in enumerate(self.slots.values()):
                wanted = 0 if case_ports is None else case_ports + offset
                case_listeners = await trio.open_tcp_listeners(wanted, host=host)
                self.ports[slot.case.id] = case_listeners[0].socket.getsockname()[1]

                async def handler(tcp: trio.SocketStream, slot: _Slot = slot) -> None:
                    await self._serve_slot(slot, tcp)

                await nursery.start(trio.serve_listeners, handler, case_listeners)
                nursery.start_soon(self._grader, slot)
            task_status.started({"gateway": f"{host}:{self.shared_port}", "cases": self.ports})

    async def _serve_slot(self, slot: _Slot, transport: trio.abc.Stream, **options: Any) -> None:
        if not slot.started.is_set():
            slot.started_at = trio.current_time()
            slot.started.set()
        await slot.gateway.serve_transport(transport, name=self.agent, **options)

    async def _dispatch(self, tcp: trio.SocketStream) -> None:
        # Shared port: handshake, then read until the first notification names its case.
        tls = TLSStream(tcp, self.contexts[ServerCert.TRUSTED], server_side=True)
        decoder = GatewayDecoder()
        received = bytearray()
        try:
            with trio.fail_after(_FIRST_FRAME_TIMEOUT):
                await tls.do_handshake()
                while True:
                    data = await tls.receive_some()
                    if not data:
                        raise trio.BrokenResourceError("closed before a notification")
                    received += data
                    decoder.receive_data(data)
                    event = decoder.next_event()
                    if event is not NEED_DATA:
                        break
        except (trio.TooSlowError, trio.BrokenResourceError, OSError):
            await trio.aclose_forcefully(tcp)
            return
        number = token_case(event.token) if isinstance(event, ReceivedNotification) else None
        case = case_by_number(number) if number is not None else None
        slot = self.slots.get(case.id) if case is not None else None
        if slot is None or not self.shared(slot.case):
            await trio.aclose_forcefully(tcp)
            return
        name = self.agent
        if name is None and tls.peer_certificate is not None:
            name = client_name(tls.peer_certificate)
        if not slot.started.is_set():
            slot.started_at = trio.current_time()
            slot.started.set()
        await slot.gateway.serve_transport(tcp, tls=tls, initial=bytes(received), name=name)

    async def _grader(self, slot: _Slot) -> None:
        while True:
            await slot.started.wait()
            gateway = slot.gateway
            case = slot.case
            deadline = slot.started_at + case.deadline
            timed_out = True
            with trio.move_on_at(deadline):
                while not (_complete(case, gateway) and gateway.open_connections == 0):
                    await gateway.wait_changed()
                # Complete: wait for quiet (a late duplicate or reconnect still counts).
                while trio.current_time() < gateway.last_activity + self.quiet:
                    with trio.move_on_at(gateway.last_activity + self.quiet):
                        await gateway.wait_changed()
                timed_out = False
            if timed_out:
                with trio.move_on_after(1.0):
                    await gateway.wait_closed()
            verdict = grade(case, gateway.observation, None, timed_out=timed_out)
            agent = self.agent or next(iter(sorted(gateway.client_names)), "unknown")
            self.on_result(
                CaseResult(
                    case=case,
                    agent=agent,
                    verdict=verdict,
                    observation=gateway.observation,
                    report=None,
                    timed_out=timed_out,
                    started=time.time() - (trio.current_time() - slot.started_at),
                    duration=trio.current_time() - slot.started_at,
                )
            )
            # A fresh case for the next client.
            slot.gateway = CaseGateway(case, slot.number, slot.context)
            slot.started = trio.Event()


def _complete(case: Case, gateway: CaseGateway) -> bool:
    """Whether the wire shows every workload line accounted for."""
    obs = gateway.observation
    if case.service is Service.FEEDBACK:
        return obs.feedback_complete
    if case.script.close_after_handshake or case.script.server_cert is not ServerCert.TRUSTED:
        return False  # only the deadline ends these: the point is how often it retries
    done = {a.index for a in obs.arrivals if a.fate is not Fate.DISCARDED}
    needed = {i.index for i in case.workload if i.expect in (Expect.DELIVER, Expect.REJECT)}
    return needed <= done


def write_workloads(cases: Sequence[Case], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        text = "".join(line + "\n" for line in case.workload_lines())
        (folder / f"{case.id}.jsonl").write_text(text, encoding="utf-8")


def announce(info: dict[str, Any], certs: Path, workloads: Path) -> str:
    return json.dumps(info | {"certs": str(certs), "workloads": str(workloads)})
