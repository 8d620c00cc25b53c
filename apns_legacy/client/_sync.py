"""Synchronous facades for scripts and old web apps that are not async.

* :func:`send_all`: one call, every outcome back, its own event loop for the call.
* :class:`SyncSender`: a long-lived sender on a thread of its own, for a web app that
  sends a few notifications per request and wants each one's outcome, without a
  connection per request.
"""

from __future__ import annotations

import concurrent.futures
import threading
import types
from collections.abc import Iterable

import OpenSSL.SSL
import trio

from ..wire import LocalProtocolError, Notification
from ._config import PRODUCTION_GATEWAY, SenderConfig
from ._open import open_sender
from ._outcomes import Outcome, SenderStats
from ._sender import Sender


def send_all(
    notifications: Iterable[Notification],
    context: OpenSSL.SSL.Context,
    *,
    host: str = PRODUCTION_GATEWAY[0],
    port: int = PRODUCTION_GATEWAY[1],
    server_hostname: str | None = None,
    config: SenderConfig | None = None,
) -> tuple[list[Outcome], SenderStats]:
    """Send every notification, wait for every outcome, and return them in submission order.

    Runs its own trio event loop, so call it from plain (non-async) code only. The
    outcomes list has one entry per notification, in the order given.

    Example::

        outcomes, stats = send_all(notifications, client_context(creds), host="127.0.0.1",
                                   port=2195)
        failed = [o for o in outcomes if not o.accepted]
    """
    items = list(notifications)
    config = config or SenderConfig()
    # Everything is checked before anything is sent; a bad one is named by its index.
    for index, notification in enumerate(items):
        try:
            Sender.check_limits(config, notification)
        except LocalProtocolError as exc:
            raise LocalProtocolError(f"notification {index}: {exc}") from None
    results: list[Outcome | None] = [None] * len(items)

    def record(outcome: Outcome) -> None:
        results[outcome.tag] = outcome

    async def main() -> SenderStats:
        async with open_sender(
            context,
            host=host,
            port=port,
            server_hostname=server_hostname,
            config=config,
            on_outcome=record,
        ) as sender:
            for index, notification in enumerate(items):
                await sender.submit(notification, tag=index)
            await sender.flush()
        return sender.stats

    stats = trio.run(main)
    outcomes = [outcome for outcome in results if outcome is not None]
    assert len(outcomes) == len(items), "every notification has exactly one outcome"
    return outcomes, stats


def _resolve(outcome: Outcome) -> None:
    # SyncSender submits with tag=(future, the caller's tag): hand the outcome over.
    future, tag = outcome.tag
    outcome.tag = tag
    future.set_result(outcome)


class SyncSender:
    """A sender that lives on a thread of its own; every method is plain, blocking code.

    For code that is not async (a WSGI app, a script with a loop): connections stay
    open between calls and are shared by every thread that calls :meth:`send` or
    :meth:`submit`. Use it as a context manager (or call :meth:`close`), which settles
    what is outstanding and stops the thread.

    Example::

        with SyncSender(client_context(creds), host="gateway.example.net") as push:
            outcome = push.send(Notification(token=token, payload=payload))
            if not outcome.accepted:
                ...
    """

    def __init__(
        self,
        context: OpenSSL.SSL.Context,
        *,
        host: str = PRODUCTION_GATEWAY[0],
        port: int = PRODUCTION_GATEWAY[1],
        server_hostname: str | None = None,
        config: SenderConfig | None = None,
    ) -> None:
        self.config = config or SenderConfig()
        self._ready = threading.Event()
        self._sender: Sender | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._main,
            args=(context, host, port, server_hostname),
            name="apns-legacy-sender",
            daemon=True,
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _main(
        self, context: OpenSSL.SSL.Context, host: str, port: int, server_hostname: str | None
    ) -> None:
        async def run() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            async with open_sender(
                context,
                host=host,
                port=port,
                server_hostname=server_hostname,
                config=self.config,
                on_outcome=_resolve,
            ) as sender:
                self._sender = sender
                self._ready.set()
                await self._stop.wait()

        try:
            trio.run(run)
        except BaseException as exc:  # reported to the constructor, or on close
            self._error = exc
        finally:
            self._ready.set()

    @property
    def stats(self) -> SenderStats:
        """The sender's running totals."""
        return self._running().stats

    def submit(
        self, notification: Notification, tag: object = None
    ) -> concurrent.futures.Future[Outcome]:
        """Queue one notification; the future's result is its :class:`Outcome`.

        Raises:
            LocalProtocolError: it breaks the configured limits (nothing is queued).
            trio.ClosedResourceError: the sender is closed.
        """
        sender = self._running()
        Sender.check_limits(self.config, notification)
        future: concurrent.futures.Future[Outcome] = concurrent.futures.Future()

        async def submit() -> None:
            await sender.submit(notification, tag=(future, tag))

        trio.from_thread.run(submit, trio_token=self._token)
        return future

    def send(self, notification: Notification, *, timeout: float | None = None) -> Outcome:
        """Send one notification and wait for its outcome (a confirmation probe is
        written at once if nothing else is coming). ``timeout``: seconds, or forever."""
        future = self.submit(notification)
        sender = self._running()
        trio.from_thread.run_sync(sender.request_confirmation, trio_token=self._token)
        return future.result(timeout)

    def close(self) -> None:
        """Settle what is outstanding (up to ``close_timeout``) and stop. Idempotent."""
        if self._thread.is_alive() and self._stop is not None:
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join()

    def __enter__(self) -> SyncSender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.close()

    def _running(self) -> Sender:
        if self._sender is None or not self._thread.is_alive():
            raise trio.ClosedResourceError("the SyncSender is closed")
        return self._sender
