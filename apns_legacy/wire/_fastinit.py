"""Helpers for the hand-written ``__init__`` of the hot value types (Notification, DeviceToken).

attrs' generated ``__init__`` for a frozen slotted class sets each field through a
bound ``object.__setattr__`` and then calls each field's validator: a few function
calls per field, which is most of the cost of making a notification. The hot types
declare ``init=False`` and write their ``__init__`` out: one combined test lets the
usual values through, and anything else goes to the fields' own validators, in
field order, so the errors are the same ones; the fields are set through the slots'
descriptors. Everything else (repr, equality, hashing, ordering, ``attrs.fields``,
``attrs.evolve``, ``attrs.validate``) stays attrs'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs


def validate(instance: object, fields: tuple[attrs.Attribute[Any], ...], *values: object) -> None:
    """Run the fields' validators on ``values`` in field order (the first error wins)."""
    for field, value in zip(fields, values, strict=True):
        if field.validator is not None:
            field.validator(instance, field, value)


def slot_setter(cls: type, name: str) -> Callable[[object, Any], None]:
    """The ``__set__`` of field ``name``'s slot in the attrs slotted class ``cls``.

    It sets the field without the frozen class's ``__setattr__`` (which refuses), as
    attrs' own ``__init__`` does through ``object.__setattr__``, for less.
    """
    descriptor = cls.__dict__[name]
    if type(descriptor).__name__ != "member_descriptor":
        raise TypeError(f"{cls.__name__}.{name} is not a slot")
    setter: Callable[[object, Any], None] = descriptor.__set__
    return setter
