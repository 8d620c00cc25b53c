"""Apple's reasons for refusing a notification on the HTTP/2 provider API.

The table is Apple's *Handling notification responses from APNs* page (HTTP2.md 1.3):
each reason with the status it comes with and Apple's description. Reasons Apple may
add later are kept as plain strings by :func:`reason_from_str`, never an error (the
h2 ``_error_code_from_int`` convention).
"""

from __future__ import annotations

import enum
from typing import Final


class Reason(enum.StrEnum):
    """A reason from the JSON body of an error response (``{"reason": "..."}``)."""

    BAD_COLLAPSE_ID = "BadCollapseId"
    BAD_DEVICE_TOKEN = "BadDeviceToken"
    BAD_EXPIRATION_DATE = "BadExpirationDate"
    BAD_MESSAGE_ID = "BadMessageId"
    BAD_PRIORITY = "BadPriority"
    BAD_TOPIC = "BadTopic"
    DEVICE_TOKEN_NOT_FOR_TOPIC = "DeviceTokenNotForTopic"
    DUPLICATE_HEADERS = "DuplicateHeaders"
    IDLE_TIMEOUT = "IdleTimeout"
    INVALID_PUSH_TYPE = "InvalidPushType"
    MISSING_DEVICE_TOKEN = "MissingDeviceToken"
    MISSING_TOPIC = "MissingTopic"
    PAYLOAD_EMPTY = "PayloadEmpty"
    TOPIC_DISALLOWED = "TopicDisallowed"
    BAD_CERTIFICATE = "BadCertificate"
    BAD_CERTIFICATE_ENVIRONMENT = "BadCertificateEnvironment"
    EXPIRED_PROVIDER_TOKEN = "ExpiredProviderToken"
    FORBIDDEN = "Forbidden"
    INVALID_PROVIDER_TOKEN = "InvalidProviderToken"
    MISSING_PROVIDER_TOKEN = "MissingProviderToken"
    UNRELATED_KEY_ID_IN_TOKEN = "UnrelatedKeyIdInToken"
    BAD_ENVIRONMENT_KEY_ID_IN_TOKEN = "BadEnvironmentKeyIdInToken"
    BAD_PATH = "BadPath"
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    EXPIRED_TOKEN = "ExpiredToken"
    UNREGISTERED = "Unregistered"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    TOO_MANY_PROVIDER_TOKEN_UPDATES = "TooManyProviderTokenUpdates"
    TOO_MANY_REQUESTS = "TooManyRequests"
    INTERNAL_SERVER_ERROR = "InternalServerError"
    SERVICE_UNAVAILABLE = "ServiceUnavailable"
    SHUTDOWN = "Shutdown"

    @property
    def status(self) -> int:
        """The HTTP status Apple sends this reason with."""
        return _TABLE[self][0]

    @property
    def description(self) -> str:
        """Apple's description of the reason."""
        return _TABLE[self][1]


_TABLE: Final[dict[Reason, tuple[int, str]]] = {
    Reason.BAD_COLLAPSE_ID: (400, "The collapse identifier exceeds the maximum allowed size."),
    Reason.BAD_DEVICE_TOKEN: (
        400,
        "The specified device token is invalid. Verify that the request contains a valid "
        "token and that the token matches the environment.",
    ),
    Reason.BAD_EXPIRATION_DATE: (400, "The apns-expiration value is invalid."),
    Reason.BAD_MESSAGE_ID: (400, "The apns-id value is invalid."),
    Reason.BAD_PRIORITY: (400, "The apns-priority value is invalid."),
    Reason.BAD_TOPIC: (400, "The apns-topic value is invalid."),
    Reason.DEVICE_TOKEN_NOT_FOR_TOPIC: (400, "The device token doesn't match the specified topic."),
    Reason.DUPLICATE_HEADERS: (400, "One or more headers are repeated."),
    Reason.IDLE_TIMEOUT: (400, "Idle timeout."),
    Reason.INVALID_PUSH_TYPE: (400, "The apns-push-type value is invalid."),
    Reason.MISSING_DEVICE_TOKEN: (
        400,
        "The device token isn't specified in the request :path. Verify that the :path "
        "header contains the device token.",
    ),
    Reason.MISSING_TOPIC: (
        400,
        "The apns-topic header of the request isn't specified and is required. The "
        "apns-topic header is mandatory when the client is connected using a certificate "
        "that supports multiple topics.",
    ),
    Reason.PAYLOAD_EMPTY: (400, "The message payload is empty."),
    Reason.TOPIC_DISALLOWED: (400, "Pushing to this topic is not allowed."),
    Reason.BAD_CERTIFICATE: (403, "The certificate is invalid."),
    Reason.BAD_CERTIFICATE_ENVIRONMENT: (
        403,
        "The client certificate is for the wrong environment.",
    ),
    Reason.EXPIRED_PROVIDER_TOKEN: (
        403,
        "The provider token is stale and a new token should be generated.",
    ),
    Reason.FORBIDDEN: (403, "The specified action is not allowed."),
    Reason.INVALID_PROVIDER_TOKEN: (
        403,
        "The provider token is not valid, or the token signature can't be verified.",
    ),
    Reason.MISSING_PROVIDER_TOKEN: (
        403,
        "No provider certificate was used to connect to APNs, and the authorization "
        "header is missing or no provider token is specified.",
    ),
    Reason.UNRELATED_KEY_ID_IN_TOKEN: (
        403,
        "The key ID in the provider token isn't related to the key ID of the token used "
        "in the first push of this connection. To use this token, open a new connection.",
    ),
    Reason.BAD_ENVIRONMENT_KEY_ID_IN_TOKEN: (
        403,
        "The key ID in the provider token doesn't match the environment.",
    ),
    Reason.BAD_PATH: (404, "The request contained an invalid :path value."),
    Reason.METHOD_NOT_ALLOWED: (405, "The specified :method value isn't POST."),
    Reason.EXPIRED_TOKEN: (410, "The device token has expired."),
    Reason.UNREGISTERED: (
        410,
        "The device token is inactive for the specified topic. There is no need to send "
        "further pushes to the same device token, unless your application retrieves the "
        "same device token.",
    ),
    Reason.PAYLOAD_TOO_LARGE: (413, "The message payload is too large."),
    Reason.TOO_MANY_PROVIDER_TOKEN_UPDATES: (
        429,
        "The provider's authentication token is being updated too often. Update the "
        "authentication token no more than once every 20 minutes.",
    ),
    Reason.TOO_MANY_REQUESTS: (
        429,
        "Too many requests were made consecutively to the same device token.",
    ),
    Reason.INTERNAL_SERVER_ERROR: (500, "An internal server error occurred."),
    Reason.SERVICE_UNAVAILABLE: (503, "The service is unavailable."),
    Reason.SHUTDOWN: (503, "The APNs server is shutting down."),
}

_BY_VALUE: Final[dict[str, Reason]] = {reason.value: reason for reason in Reason}


def reason_from_str(text: str) -> Reason | str:
    """The :class:`Reason` named ``text``, or ``text`` itself for a reason not in the table."""
    return _BY_VALUE.get(text, text)
