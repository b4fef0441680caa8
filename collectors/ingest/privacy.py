"""What never lands as sent: payloads cut down to their allow-list, excluded fields removed, IP addresses
anonymised, receiver public keys replaced by a keyed hash.

Everything here works on decoded values; :mod:`collectors.ingest.rules` decodes and re-encodes the payload text
and applies it to rows (strictly: an IP key that holds no IP address refuses the record) and to what
``raw.rejects`` keeps of refused records (leniently: such a key is dropped, since nothing else can be stored of
it). Both transports and the JSONL loader go through those rules, so one :class:`Privacy` governs every path.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

HASHED_KEY_PREFIX = "hmac-sha256:"
IpMode = Literal["off", "truncate", "hmac"]
IP_MODES: tuple[IpMode, ...] = ("off", "truncate", "hmac")
IPV4_PREFIX = 24  # what truncation keeps of an IPv4 address
IPV6_PREFIX = 48  # and of an IPv6 one (a site: the usual allocation to one customer)
# No IP address is longer as text (45 characters, and an interface name after "%"): longer values are refused
# before the parser sees them, so a 10 kB string costs nothing.
MAX_ADDRESS_CHARS = 64

Path = tuple[str, ...]
# An allow-list as a tree: a key maps to KEEP_ALL (keep its value whole) or to the tree of what to keep of the
# object under it (a constant, not a sentinel object, so that a pickled tree means the same in a worker).
KEEP_ALL = True
AllowTree = dict[str, "AllowTree | bool"]


class AddressRefused(ValueError):
    """A configured IP key holds something that is not an IP address; ``str(error)`` says what, not its value."""


def key_paths(fields: Iterable[str]) -> tuple[Path, ...]:
    return tuple(tuple(name.split(".")) for name in fields)


def _allow_tree(paths: Iterable[Path]) -> AllowTree:
    tree: AllowTree = {}
    for path in paths:
        node = tree
        for depth, key in enumerate(path):
            last = depth == len(path) - 1
            below = node.get(key)
            if below is KEEP_ALL:
                break  # a shorter path already keeps all of it
            if last:
                node[key] = KEEP_ALL
            else:
                node = node.setdefault(key, {})  # type: ignore[assignment]
    return tree


def _keep_only(value: dict, tree: AllowTree) -> bool:
    """Remove from ``value`` every key its allow-list tree does not keep; True when something was removed.
    A nested path keeps a key only while it holds an object (arrays are not looked into: they are kept whole by
    their own path, or removed)."""
    changed = False
    for key in list(value):
        below = tree.get(key)
        if below is None:
            del value[key]
            changed = True
        elif below is not KEEP_ALL:
            if isinstance(value[key], dict):
                changed = _keep_only(value[key], below) or changed  # type: ignore[arg-type]
            else:
                del value[key]
                changed = True
    return changed


def _parent(value: dict, path: Path) -> dict | None:
    """The object holding the last key of ``path``, if the path leads through objects."""
    node = value
    for key in path[:-1]:
        node = node.get(key)  # type: ignore[assignment]
        if not isinstance(node, dict):
            return None
    return node


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return "a number"


def parse_address(value: object, label: str = "ip") -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IP address ``value`` holds: IPv4-mapped IPv6 (``::ffff:1.2.3.4``) read as the IPv4 address it maps,
    an IPv6 zone (``%eth0``, a sender's interface name) dropped. Raises :class:`AddressRefused`."""
    if not isinstance(value, str) or len(value) > MAX_ADDRESS_CHARS:
        raise AddressRefused(f"payload {label} holds {_kind(value)}, not an IP address")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise AddressRefused(f"payload {label} holds {_kind(value)} that is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(int(address))
    return address


_IPV4_MASK = (1 << 32) - (1 << (32 - IPV4_PREFIX))
_IPV6_MASK = (1 << 128) - (1 << (128 - IPV6_PREFIX))


def truncated_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The first address of the address's /24 (IPv4) or /48 (IPv6) (masked as an integer: building the network
    object costs more than the rest of the payload's privacy together)."""
    if address.version == 4:
        return str(ipaddress.IPv4Address(int(address) & _IPV4_MASK))
    return str(ipaddress.IPv6Address(int(address) & _IPV6_MASK))


@dataclass(frozen=True)
class Privacy:
    """What never lands as sent; built from :class:`collectors.config.Settings` by :meth:`from_settings`.

    ``payload_allow``: per ``"channel/event"``, ``"channel"`` or ``"*"`` (the most specific entry wins), the key
    paths a product event's payload may keep; every other key is removed. An event no entry matches keeps its
    payload, unless ``allow_required``: then it keeps none (``{}``), so a new event type carries nothing until
    its fields are listed. ``payload_exclude``: key paths removed from every payload (after the allow-list: an
    excluded path goes even when allowed). ``ip_mode``/``ip_paths``: the payload keys holding a client's IP
    address, truncated to its /24 or /48 (``truncate``) or replaced by ``hmac-sha256:<hex>`` under ``ip_salt``
    (``hmac``: one address, one value, so distinct addresses can still be counted). ``receiver_key_salt``: when
    set, each receiver public key is replaced by ``hmac-sha256:<hex>`` of it: deterministic, so replays still
    deduplicate and the reliability marts, which only group and join on the key, give the same numbers; keyed,
    because public keys are public and an unkeyed hash of one is a lookup away.

    Key paths are dotted (``device.ip``) and lead through objects only: keys inside arrays are not looked into.
    Salts stay out of ``repr``. Picklable (the loader's worker processes get it).
    """

    payload_exclude: tuple[Path, ...] = ()
    receiver_key_salt: bytes | None = field(default=None, repr=False)
    payload_allow: tuple[tuple[str, tuple[Path, ...]], ...] = ()
    allow_required: bool = False
    ip_mode: IpMode = "off"
    ip_paths: tuple[Path, ...] = (("ip",),)
    ip_salt: bytes | None = field(default=None, repr=False)
    _allow_trees: dict[str, AllowTree] = field(default_factory=dict, init=False, repr=False, compare=False)
    # True when a product event's payload may not land as sent (an attribute: read once per event)
    touches_payload: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.ip_mode not in IP_MODES:
            raise ValueError(f"ip_mode must be one of {', '.join(IP_MODES)}, not {self.ip_mode!r}")
        if self.ip_mode == "hmac" and not self.ip_salt:
            raise ValueError("ip_mode 'hmac' needs a salt")
        self._allow_trees.update((key, _allow_tree(paths)) for key, paths in self.payload_allow)
        touches = bool(self.payload_exclude or self.payload_allow or self.allow_required or self.ip_mode != "off")
        object.__setattr__(self, "touches_payload", touches)

    @classmethod
    def of(
        cls,
        exclude_fields: Iterable[str] = (),
        receiver_key_salt: str | None = None,
        *,
        allow: Mapping[str, Iterable[str]] | None = None,
        allow_required: bool = False,
        ip_mode: IpMode = "off",
        ip_fields: Iterable[str] = ("ip",),
        ip_salt: str | None = None,
    ) -> Privacy:
        return cls(
            key_paths(exclude_fields),
            receiver_key_salt.encode() if receiver_key_salt else None,
            payload_allow=tuple((key, key_paths(paths)) for key, paths in (allow or {}).items()),
            allow_required=allow_required,
            ip_mode=ip_mode,
            ip_paths=key_paths(ip_fields),
            ip_salt=ip_salt.encode() if ip_salt else None,
        )

    @classmethod
    def from_settings(cls, settings: object) -> Privacy:
        """The rules a :class:`collectors.config.Settings` asks for."""
        s = settings
        key_salt = s.receiver_key_salt.get_secret_value() if s.hash_receiver_keys else None  # type: ignore[attr-defined]
        mode = s.ip_anonymization  # type: ignore[attr-defined]
        return cls.of(
            s.payload_exclude_fields,  # type: ignore[attr-defined]
            key_salt,
            allow=s.payload_allow_fields,  # type: ignore[attr-defined]
            allow_required=s.payload_allow_required,  # type: ignore[attr-defined]
            ip_mode=mode,
            ip_fields=s.ip_fields,  # type: ignore[attr-defined]
            ip_salt=s.ip_salt.get_secret_value() if mode == "hmac" else None,  # type: ignore[attr-defined]
        )

    @property
    def active(self) -> bool:
        return self.touches_payload or self.receiver_key_salt is not None

    def receiver_key(self, key: str) -> str:
        if self.receiver_key_salt is None or not key:
            return key
        return HASHED_KEY_PREFIX + hmac.new(self.receiver_key_salt, key.encode(), hashlib.sha256).hexdigest()

    # ----------------------------------------------------------------------- payloads

    def allow_tree(self, channel: str, event: str) -> AllowTree | None:
        """What the payload of a ``channel``/``event`` may keep; None: all of it."""
        trees = self._allow_trees
        for key in (f"{channel}/{event}", channel, "*"):
            tree = trees.get(key)
            if tree is not None:
                return tree
        return {} if self.allow_required else None

    def anonymized_ip(self, value: object, label: str = "ip") -> str:
        """``value`` anonymised by ``ip_mode``; raises :class:`AddressRefused` when it is not an IP address."""
        address = parse_address(value, label)
        if self.ip_mode == "hmac":
            assert self.ip_salt is not None
            return HASHED_KEY_PREFIX + hmac.new(self.ip_salt, str(address).encode(), hashlib.sha256).hexdigest()
        return truncated_address(address)

    def clean_payload(self, payload: dict, channel: str, event: str, *, strict: bool = True) -> bool:
        """Apply the allow-list, the exclusions and IP anonymisation to ``payload`` in place; True when anything
        (a key, a value) was changed. An IP key holding JSON null is left as null. An IP key holding anything
        else that is not an IP address raises :class:`AddressRefused` when ``strict``, else it is removed."""
        changed = False
        tree = self.allow_tree(channel, event)
        if tree is not None:
            changed = _keep_only(payload, tree)
        for path in self.payload_exclude:
            parent = _parent(payload, path)
            if parent is not None and path[-1] in parent:
                del parent[path[-1]]
                changed = True
        if self.ip_mode != "off":
            for path in self.ip_paths:
                parent = _parent(payload, path)
                if parent is None or path[-1] not in parent:
                    continue
                changed = True  # even a null: the payload is then written anew, duplicate keys and all gone
                value = parent[path[-1]]
                if value is None:
                    continue
                try:
                    parent[path[-1]] = self.anonymized_ip(value, ".".join(path))
                except AddressRefused:
                    if strict:
                        raise
                    del parent[path[-1]]
        return changed


NO_PRIVACY = Privacy()
