"""What never lands as sent: payload fields excluded, receiver public keys replaced by a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

HASHED_KEY_PREFIX = "hmac-sha256:"


def _payload_paths(fields: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(name.split(".")) for name in fields)


@dataclass(frozen=True)
class Privacy:
    """What never lands as sent (settings ``TELEMETRY_PAYLOAD_EXCLUDE_FIELDS``, ``TELEMETRY_HASH_RECEIVER_KEYS``
    with ``TELEMETRY_RECEIVER_KEY_SALT``).

    ``payload_exclude``: key paths (``"email"``, ``"device.ip"``) removed from product event payloads (objects
    only; keys inside arrays are not looked into). ``receiver_key_salt``: when set, each receiver public key is
    replaced by ``hmac-sha256:<hex>`` of it under the salt: deterministic, so replays still deduplicate and the
    reliability marts, which only group and join on the key, give the same numbers; keyed, because public keys
    are public and an unkeyed hash of one is a lookup away. Picklable (the loader's worker processes get it).
    """

    payload_exclude: tuple[tuple[str, ...], ...] = ()
    receiver_key_salt: bytes | None = field(default=None, repr=False)

    @classmethod
    def of(cls, exclude_fields: Iterable[str] = (), receiver_key_salt: str | None = None) -> Privacy:
        return cls(_payload_paths(exclude_fields), receiver_key_salt.encode() if receiver_key_salt else None)

    @classmethod
    def from_settings(cls, settings: object) -> Privacy:
        """The rules a :class:`collectors.config.Settings` asks for."""
        salt = settings.receiver_key_salt.get_secret_value() if settings.hash_receiver_keys else None  # type: ignore[attr-defined]
        return cls.of(settings.payload_exclude_fields, salt)  # type: ignore[attr-defined]

    @property
    def active(self) -> bool:
        return bool(self.payload_exclude) or self.receiver_key_salt is not None

    def receiver_key(self, key: str) -> str:
        if self.receiver_key_salt is None or not key:
            return key
        return HASHED_KEY_PREFIX + hmac.new(self.receiver_key_salt, key.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _parent(value: dict, path: tuple[str, ...]) -> dict | None:
        """The object holding the last key of ``path``, if the path leads through objects."""
        node = value
        for key in path[:-1]:
            node = node.get(key)  # type: ignore[assignment]
            if not isinstance(node, dict):
                return None
        return node

    def has_excluded(self, value: dict) -> bool:
        """True when ``value`` (a payload object) holds a key path to exclude."""
        return any(path[-1] in (self._parent(value, path) or ()) for path in self.payload_exclude)

    def drop_excluded(self, value: dict) -> None:
        for path in self.payload_exclude:
            parent = self._parent(value, path)
            if parent is not None:
                parent.pop(path[-1], None)


NO_PRIVACY = Privacy()
