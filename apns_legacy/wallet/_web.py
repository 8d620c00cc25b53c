"""The PassKit web service: the five ``/v1`` endpoints Wallet calls, as a Starlette app.

Apple's *PassKit Web Service Reference* (and the current *Wallet Passes* pages), with
the status codes they give:

=======  ===============================================================  ==========================
Method   Path (below the pass's ``webServiceURL``)                        Answers
=======  ===============================================================  ==========================
POST     ``/v1/devices/{device}/registrations/{passType}/{serial}``       201 new, 200 already, 401
GET      ``/v1/devices/{device}/registrations/{passType}?passesUpdated``  200 JSON, 204 none
         ``Since={tag}``
GET      ``/v1/passes/{passType}/{serial}``                               200 pass, 304, 401
DELETE   ``/v1/devices/{device}/registrations/{passType}/{serial}``       200, 401
POST     ``/v1/log``                                                      200
=======  ===============================================================  ==========================

``Authorization: ApplePass <authenticationToken>`` guards the pass and the
(un)registration endpoints; the token is compared in constant time with the one in the
stored pass's ``pass.json``. An unknown pass answers 401 as a wrong token does, so the
service does not tell which serial numbers exist. The serial-number query needs no
token: the device library identifier is the shared secret.

Choices where Apple says nothing: a request body that is not the JSON Apple describes
gets 400; a body over :data:`MAX_BODY` bytes gets 413; a ``passesUpdatedSince`` that
is not one of our tags (an integer) is treated as absent, so the device gets every
serial number and, at worst, a few ``304``s; ``DELETE`` deletes before it answers (an
implementation that answered first was seen to lose deletes).

Store calls are blocking SQLite calls: they run in a worker thread, one at a time, so
the event loop keeps serving while another process (``wallet update``) holds the
database lock.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import hmac
import json
import logging
from collections.abc import Callable
from contextlib import aclosing
from typing import Any, Final, TypeVar

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from ..wire import ProtocolError
from ._pkpass import PKPASS_MEDIA_TYPE
from ._store import PassStore, StoredPass

logger = logging.getLogger("apns_legacy.wallet")
#: Messages devices send to ``/v1/log`` go to this logger (at WARNING: they report errors).
device_logger = logging.getLogger("apns_legacy.wallet.device")

#: Largest request body read (registration and log bodies are tiny).
MAX_BODY: Final = 64 * 1024
_AUTH_SCHEME: Final = "applepass"
_T = TypeVar("_T")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class WalletService:
    """The web service over a :class:`PassStore`; ``app`` is the ASGI application.

    Args:
        store: where passes and registrations are kept.
        base_path: the path part of the passes' ``webServiceURL`` (``""`` when the
            URL is the host's root); the endpoints are below ``{base_path}/v1``.
    """

    def __init__(self, store: PassStore, *, base_path: str = "") -> None:
        self.store = store
        self.base_path = base_path.rstrip("/")
        self._limiter: trio.CapacityLimiter | None = None
        routes = [
            Route(
                "/devices/{device}/registrations/{pass_type}/{serial}",
                self._register,
                methods=["POST"],
            ),
            Route(
                "/devices/{device}/registrations/{pass_type}/{serial}",
                self._unregister,
                methods=["DELETE"],
            ),
            Route("/devices/{device}/registrations/{pass_type}", self._serials, methods=["GET"]),
            Route("/passes/{pass_type}/{serial}", self._latest_pass, methods=["GET"]),
            Route("/log", self._log, methods=["POST"]),
        ]
        self.app = Starlette(routes=[Mount(f"{self.base_path}/v1", routes=routes)])

    async def _run(self, work: Callable[[], _T]) -> _T:
        if self._limiter is None:
            self._limiter = trio.CapacityLimiter(1)
        return await trio.to_thread.run_sync(work, limiter=self._limiter)

    # -- helpers --------------------------------------------------------------------

    async def _authorized(self, request: Request, *, with_pkpass: bool) -> StoredPass | None:
        """The pass named in the path if the request carries its token, else None."""
        pass_type = request.path_params["pass_type"]
        serial = request.path_params["serial"]
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != _AUTH_SCHEME or not token.strip():
            return None
        stored = await self._run(
            lambda: self.store.get_pass(pass_type, serial, with_pkpass=with_pkpass)
        )
        if stored is None:
            return None
        expected = stored.authentication_token.encode("utf-8")
        if not hmac.compare_digest(token.strip().encode("utf-8"), expected):
            return None
        return stored

    @staticmethod
    async def _json_body(request: Request) -> Any:
        body = bytearray()
        async with aclosing(request.stream()) as chunks:
            async for chunk in chunks:
                body += chunk
                if len(body) > MAX_BODY:
                    raise _BadRequest(413, f"request body over {MAX_BODY} bytes")
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _BadRequest(400, "request body is not JSON") from None

    @staticmethod
    def _error(exc: _BadRequest) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    # -- endpoints ------------------------------------------------------------------

    async def _register(self, request: Request) -> Response:
        stored = await self._authorized(request, with_pkpass=False)
        if stored is None:
            return Response(status_code=401)
        try:
            body = await self._json_body(request)
            token = body.get("pushToken") if isinstance(body, dict) else None
            if not isinstance(token, str):
                raise _BadRequest(400, 'body must be {"pushToken": "<hex>"}')
        except _BadRequest as exc:
            return self._error(exc)
        device = request.path_params["device"]

        def register() -> bool:
            return self.store.register(
                device_library_id=device,
                push_token=token,
                pass_type_id=stored.pass_type_id,
                serial_number=stored.serial_number,
            )

        try:
            created = await self._run(register)
        except (ProtocolError, ValueError) as exc:
            return self._error(_BadRequest(400, f"pushToken: {exc}"))
        logger.info(
            "device %s %s %s %s",
            device,
            "registered" if created else "registered again",
            stored.pass_type_id,
            stored.serial_number,
        )
        return Response(status_code=201 if created else 200)

    async def _unregister(self, request: Request) -> Response:
        stored = await self._authorized(request, with_pkpass=False)
        if stored is None:
            return Response(status_code=401)
        device = request.path_params["device"]
        # Deleted before answering: a 200 means it is gone.
        await self._run(
            lambda: self.store.unregister(
                device_library_id=device,
                pass_type_id=stored.pass_type_id,
                serial_number=stored.serial_number,
            )
        )
        logger.info(
            "device %s unregistered %s %s", device, stored.pass_type_id, stored.serial_number
        )
        return Response(status_code=200)

    async def _serials(self, request: Request) -> Response:
        device = request.path_params["device"]
        pass_type = request.path_params["pass_type"]
        since_text = request.query_params.get("passesUpdatedSince")
        since: int | None = None
        if since_text:
            try:
                since = int(since_text)
            except ValueError:
                logger.warning(
                    "passesUpdatedSince %r is not one of our tags; sending all", since_text
                )
        updated = await self._run(lambda: self.store.updated_since(device, pass_type, since))
        if updated is None:
            return Response(status_code=204)
        return JSONResponse(
            {"serialNumbers": updated.serial_numbers, "lastUpdated": updated.last_updated}
        )

    async def _latest_pass(self, request: Request) -> Response:
        stored = await self._authorized(request, with_pkpass=True)
        if stored is None or stored.pkpass is None:
            return Response(status_code=401)
        last_modified = email.utils.format_datetime(stored.last_modified, usegmt=True)
        headers = {"Last-Modified": last_modified}
        since_text = request.headers.get("if-modified-since")
        if since_text:
            try:
                since = email.utils.parsedate_to_datetime(since_text)
            except (TypeError, ValueError):
                since = None  # not a date: answer with the pass (RFC 9110 13.1.3)
            if since is not None:
                if since.tzinfo is None:  # "-0000": UTC by RFC 5322
                    since = since.replace(tzinfo=_dt.UTC)
                if stored.last_modified <= since:
                    return Response(status_code=304, headers=headers)
        return Response(stored.pkpass, media_type=PKPASS_MEDIA_TYPE, headers=headers)

    async def _log(self, request: Request) -> Response:
        try:
            body = await self._json_body(request)
            logs = body.get("logs") if isinstance(body, dict) else None
            if not isinstance(logs, list) or not all(isinstance(line, str) for line in logs):
                raise _BadRequest(400, 'body must be {"logs": ["...", ...]}')
        except _BadRequest as exc:
            return self._error(exc)
        for line in logs:
            device_logger.warning("%s", line)
        return Response(status_code=200)
