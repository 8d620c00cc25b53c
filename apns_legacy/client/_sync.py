"""A synchronous facade for scripts and old web apps that are not async."""

from __future__ import annotations

from collections.abc import Iterable

import OpenSSL.SSL
import trio

from ..wire import Notification
from ._config import PRODUCTION_GATEWAY, SenderConfig
from ._open import open_sender
from ._outcomes import Outcome, SenderStats


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
