"""Clients for grading the conformance checker itself: one careful, several broken.

All are one small hand-written client in the style of PushSharp 4 (write a batch,
then read for a short quiet period: an error response names the failed one, no data
means the batch went through), with one knob per broken behaviour:

- ``resend``: "after" (correct: what followed the rejected one), "none" (never
  resends), "from-rejected" (resends the rejected one too; for status 10 the named,
  accepted one);
- ``read_errors=False``: never reads the error response (grocer): writes, closes,
  believes everything went through;
- ``hot_loop=True``: reconnects at once, up to 100 times, when a connection fails;
- ``verify=False``: accepts any server certificate.

They speak commands 0, 1 and 2 from the wire layer's encoders, never the project's
sender, so the checker is tested against code that shares nothing with it.
"""

from __future__ import annotations

import attrs
import trio
from OpenSSL import SSL

from apns_legacy.conform import ClientEnv, ClientReport, Reported, WorkItem
from apns_legacy.tls import TLSStream
from apns_legacy.wire import (
    NEED_DATA,
    ErrorResponse,
    ErrorResponseDecoder,
    FeedbackDecoder,
    FeedbackItem,
    RemoteProtocolError,
    encode_enhanced,
    encode_frame,
    encode_simple,
)

#: Quiet period after a batch: no data means it went through (PushSharp 4 used 750 ms).
QUIET = 0.5
#: A pause this long in the workload ends a batch first.
LONG_PAUSE = 1.0


@attrs.frozen
class Behaviour:
    name: str
    resend: str = "after"
    read_errors: bool = True
    hot_loop: bool = False
    verify: bool = True


CAREFUL = Behaviour("careful")
NEVER_RESENDS = Behaviour("never-resends", resend="none")
RESENDS_REJECTED = Behaviour("resends-rejected", resend="from-rejected")
NEVER_READS = Behaviour("never-reads", read_errors=False)
HOT_LOOP = Behaviour("hot-loop", hot_loop=True)
NEVER_VERIFIES = Behaviour("never-verifies", verify=False)


def _encode(item: WorkItem) -> bytes:
    identifier = item.index + 1
    if item.command == 0:
        return encode_simple(item.token, item.payload)
    if item.command == 1:
        return encode_enhanced(identifier, item.expiry or 0, item.token, item.payload)
    return encode_frame(
        identifier,
        item.token,
        item.payload,
        item.expiry or 0,
        10 if item.priority is None else item.priority,
    )


def _batches(items: tuple[WorkItem, ...]) -> list[list[WorkItem]]:
    batches: list[list[WorkItem]] = []
    for item in items:
        if not batches or item.after >= LONG_PAUSE:
            batches.append([])
        batches[-1].append(item)
    return batches


class _Client:
    def __init__(self, env: ClientEnv, behaviour: Behaviour) -> None:
        self.env = env
        self.behaviour = behaviour
        self.outcomes: dict[int, Reported] = {}
        self.maybe_duplicate: set[int] = set()
        self.stream: trio.abc.Stream | None = None
        self.failures = 0
        self.context = env.context if behaviour.verify else self._plain_context()

    def _plain_context(self) -> SSL.Context:
        # Our client certificate, and no verification of the server at all.
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.use_certificate(self.env.credentials.certificate)
        context.use_privatekey(self.env.credentials.private_key)
        context.set_verify(SSL.VERIFY_NONE, lambda *args: True)
        return context

    def accept(self, item: WorkItem) -> None:
        duplicate = item.index in self.maybe_duplicate
        self.outcomes[item.index] = Reported(outcome="accepted", possible_duplicate=duplicate)

    async def connect(self) -> trio.abc.Stream | None:
        limit = 100 if self.behaviour.hot_loop else 4
        while self.failures < limit:
            try:
                if self.behaviour.verify:
                    return await self.env.connect(self.context)
                # No name check either: TLS on the bare transport, no server_hostname.
                stream = TLSStream(
                    await self.env.connect_transport(), self.context, server_side=False
                )
                await stream.do_handshake()
                return stream
            except (trio.BrokenResourceError, OSError):
                self.failures += 1
                if not self.behaviour.hot_loop:
                    await trio.sleep(0.5 * 2**self.failures)
        return None

    async def run(self) -> ClientReport:
        if self.env.case.service.value == "feedback":
            return await self.feedback()
        for batch in _batches(self.env.workload):
            if batch[0].after:
                await trio.sleep(batch[0].after)
            await self.send_batch(batch)
        if self.stream is not None:
            await trio.aclose_forcefully(self.stream)
        return ClientReport(outcomes=self.outcomes)

    async def feedback(self) -> ClientReport:
        stream = await self.connect()
        if stream is None:
            return ClientReport()
        decoder = FeedbackDecoder()
        tuples: list[tuple[bytes, int]] = []
        while data := await stream.receive_some():
            decoder.receive_data(data)
            while isinstance(event := decoder.next_event(), FeedbackItem):
                tuples.append((event.token, event.timestamp))
        return ClientReport(feedback=tuple(tuples))

    async def send_batch(self, batch: list[WorkItem]) -> None:
        pending = list(batch)
        rounds = 0
        while pending and rounds < (100 if self.behaviour.hot_loop else 8):
            rounds += 1
            if self.stream is None:
                self.stream = await self.connect()
                if self.stream is None:
                    break
            stream = self.stream
            written: list[WorkItem] = []
            for item in pending:
                if item.after and written:
                    await trio.sleep(item.after)
                try:
                    await stream.send_all(_encode(item))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                written.append(item)
            if not self.behaviour.read_errors:
                for item in written:
                    self.accept(item)
                await trio.aclose_forcefully(stream)
                self.stream = None
                pending = pending[len(written) :]
                continue
            answer, closed = await self.read_answer(stream)
            if answer is None and not closed:
                for item in written:
                    self.accept(item)
                pending = pending[len(written) :]
                continue
            await trio.aclose_forcefully(stream)
            self.stream = None
            if answer is None:
                # Closed without a word: what this connection carried may or may not
                # have arrived. Resend it (flagged), after a backoff unless hot-looping.
                if self.behaviour.resend == "none":
                    for item in written:
                        self.accept(item)
                    pending = pending[len(written) :]
                else:
                    for item in written:
                        self.maybe_duplicate.add(item.index)
                self.failures += 1
                if self.failures >= (100 if self.behaviour.hot_loop else 6):
                    break
                if not self.behaviour.hot_loop:
                    await trio.sleep(0.1 * 2**self.failures)
                continue
            position = next(
                (n for n, item in enumerate(pending) if item.index + 1 == answer.identifier), None
            )
            if position is None:
                pending = pending[len(written) :]
                continue
            for item in pending[:position]:
                self.accept(item)
            named = pending[position]
            if answer.status == 10:
                self.accept(named)
                after = position + 1
            else:
                self.outcomes[named.index] = Reported(outcome="rejected", status=int(answer.status))
                after = position + 1
            if self.behaviour.resend == "none":
                pending = []
            elif self.behaviour.resend == "from-rejected":
                pending = pending[position:]
            else:
                pending = pending[after:]
        for item in pending:
            self.outcomes[item.index] = Reported(outcome="failed")

    async def read_answer(self, stream: trio.abc.Stream) -> tuple[ErrorResponse | None, bool]:
        """(error response or None, closed): waits QUIET for anything to arrive."""
        decoder = ErrorResponseDecoder()
        with trio.move_on_after(QUIET):
            while True:
                try:
                    data = await stream.receive_some()
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    decoder.receive_eof()
                else:
                    decoder.receive_data(data)
                try:
                    event = decoder.next_event()
                except RemoteProtocolError:
                    return None, True
                if isinstance(event, ErrorResponse):
                    return event, True
                if event is not NEED_DATA:
                    return None, True
        return None, False


def client(behaviour: Behaviour):
    async def run(env: ClientEnv) -> ClientReport:
        return await _Client(env, behaviour).run()

    run.__name__ = behaviour.name
    return run
