"""Grade a client written in Python, in-process, over trio memory streams.

``grade_in_process(case, client)`` runs the case's scripted gateway and calls
``client(env)``; ``env.connect()`` opens a new connection to the gateway (a memory
stream with real TLS on it; ``env.connect_transport()`` gives the bare transport
for a client that does its own TLS). The client returns a :class:`ClientReport`,
or None to be graded on the wire alone. Nothing touches the network, so it runs
under trio's autojump clock: a case with 1.5 s delays takes milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import attrs
import trio
from OpenSSL import SSL

from ..tls import Credentials, TLSStream
from ._catalogue import case_number
from ._gateway import CaseGateway
from ._grading import grade
from ._model import Case, ClientReport, WorkItem
from ._pki import ConformPKI, make_conform_pki
from ._results import CaseResult

#: The host name the in-process client verifies the server certificate against.
SERVER_NAME = "localhost"


@attrs.frozen
class ClientEnv:
    """What a client under test gets: the workload and a way to connect."""

    case: Case
    workload: tuple[WorkItem, ...]
    #: A correct client context (our client certificate, the run's trust bundle).
    context: SSL.Context
    connect_transport: Callable[[], Awaitable[trio.abc.Stream]]
    #: The client certificate and key, for a client that builds its own context.
    credentials: Credentials = attrs.field(repr=False)

    async def connect(self, context: SSL.Context | None = None) -> TLSStream:
        """A new TLS connection to the case's gateway, handshake done."""
        transport = await self.connect_transport()
        stream = TLSStream(
            transport, context or self.context, server_side=False, server_hostname=SERVER_NAME
        )
        try:
            await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream


ClientUnderTest = Callable[[ClientEnv], Awaitable[ClientReport | None]]


async def grade_in_process(
    case: Case,
    client: ClientUnderTest,
    *,
    pki: ConformPKI | None = None,
    agent: str = "in-process",
    deadline: float | None = None,
) -> CaseResult:
    """Run ``client`` against ``case``'s scripted gateway and grade it."""
    pki = pki or make_conform_pki()
    contexts = pki.server_contexts()
    started = time.time()
    clock_start = trio.current_time()
    gateway = CaseGateway(case, case_number(case), contexts[case.script.server_cert])
    report: ClientReport | None = None
    timed_out = False
    async with trio.open_nursery() as nursery:

        async def connect_transport() -> trio.abc.Stream:
            # Imported here, not at the top: trio.testing loads pytest when it is
            # installed (a third of a second), and only in-process grading needs it.
            import trio.testing

            client_end, server_end = trio.testing.memory_stream_pair()
            nursery.start_soon(gateway.serve_transport, server_end)
            return client_end

        env = ClientEnv(
            case, case.workload, pki.client_context(), connect_transport, pki.main.client
        )
        with trio.move_on_after(deadline or case.deadline) as scope:
            report = await client(env)
        timed_out = scope.cancelled_caught
        # What the client wrote before it returned is still read (as the kernel would
        # deliver it after the client's process exits).
        with trio.move_on_after(case.deadline):
            await gateway.wait_closed()
        nursery.cancel_scope.cancel()
    verdict = grade(case, gateway.observation, report, timed_out=timed_out)
    return CaseResult(
        case=case,
        agent=agent,
        verdict=verdict,
        observation=gateway.observation,
        report=report,
        timed_out=timed_out,
        started=started,
        duration=trio.current_time() - clock_start,
    )
