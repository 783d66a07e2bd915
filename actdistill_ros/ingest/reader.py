"""Bag discovery and reading with ``rosbags`` (no ROS install needed).

Types come from the definitions the bag stores (``AnyReader``); types a bag does not describe
(ROS 2 Humble sqlite3 bags store none) come from rosbags' built-in ROS 2 store plus our own
``msg/*.msg`` files, so bags of any distro deserialize the same way. A stored definition that
rosbags cannot parse (rosbag2 records service events with the raw ``.srv`` text) makes only its
own topic unreadable; the other topics read as usual.
"""

from __future__ import annotations

import functools
import os
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.interfaces import MessageDefinitionFormat
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from .config import IngestError

PACKAGE = "actdistill_ros"
STORAGE_SUFFIXES = (".db3", ".mcap")


def normalize_msgtype(msgtype: str) -> str:
    """'pkg/Name' (ROS 1) and 'pkg/msg/Name' (ROS 2) name the same type; compare in ROS 2 form."""
    parts = msgtype.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else msgtype


# ----------------------------------------------------------------------------- discovery


def find_bags(paths: list[Path]) -> list[Path]:
    """Expand the configured paths into individual bags (sorted, de-duplicated).

    A bag is a rosbag2 directory (``metadata.yaml``), a bare ``.db3``/``.mcap`` storage file
    outside any such directory, or a ROS 1 ``.bag`` file.
    """
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise IngestError(f"bag path {path}: does not exist")
        if path.is_file():
            if path.name == "metadata.yaml":
                found.append(path.parent)
            elif path.suffix in (*STORAGE_SUFFIXES, ".bag"):
                found.append(path)
            else:
                raise IngestError(f"bag path {path}: not a rosbag (.db3, .mcap, .bag or a bag directory)")
            continue
        if (path / "metadata.yaml").is_file():
            found.append(path)
            continue
        bag_dirs = sorted(p.parent for p in path.rglob("metadata.yaml"))
        found.extend(bag_dirs)
        for file in sorted(path.rglob("*")):
            if not file.is_file() or file.suffix not in (*STORAGE_SUFFIXES, ".bag"):
                continue
            if file.suffix == ".bag" or not any(d in file.parents for d in bag_dirs):
                found.append(file)
    unique = sorted({p.resolve() for p in found})
    if not unique:
        raise IngestError(
            f"no rosbags found in {', '.join(str(p) for p in paths)} "
            "(looked for metadata.yaml, *.db3, *.mcap, *.bag)"
        )
    return unique


def bag_files(bag: Path) -> list[Path]:
    """Files whose size/mtime identify a bag's content (for the cache key)."""
    return sorted(p for p in bag.rglob("*") if p.is_file()) if bag.is_dir() else [bag]


def bag_fingerprint(bag: Path) -> list[tuple[str, int, int]]:
    out = []
    for f in bag_files(bag):
        st = f.stat()
        out.append((str(f.relative_to(bag) if bag.is_dir() else f.name), st.st_size, st.st_mtime_ns))
    return out


# ----------------------------------------------------------------------------- types


def find_msg_dir() -> Path | None:
    """Our .msg files: the source tree, else an installed share/actdistill_ros/msg."""
    candidates = [Path(__file__).resolve().parents[2] / "msg"]
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates += [Path(p) / "share" / PACKAGE / "msg" for p in [*prefixes, sys.prefix]]
    return next((c for c in candidates if c.is_dir() and any(c.glob("*.msg"))), None)


def package_types(msg_dir: Path | None = None) -> dict:
    """Type definitions of our package's messages, parsed from the .msg text."""
    msg_dir = msg_dir or find_msg_dir()
    types: dict = {}
    if msg_dir is None:
        return types
    for path in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    return types


@functools.lru_cache(maxsize=1)
def default_typestore() -> Typestore:
    """rosbags' newest ROS 2 store plus our messages: for bags without stored definitions."""
    store = get_typestore(Stores.LATEST)
    store.register(package_types())
    return store


def _complete_typestore(reader: AnyReader) -> None:
    """Add the default definitions of any type the bag itself does not define."""
    have = reader.typestore.fielddefs
    default = default_typestore().fielddefs
    missing = {name: d for name, d in default.items() if name not in have}
    if missing:
        reader.typestore.register(missing)


# ----------------------------------------------------------------------------- reading


def _stored_types(conn) -> dict:
    """The type definitions one connection stores (MSG text, or IDL blocks)."""
    data = conn.msgdef.data
    if conn.msgdef.format == MessageDefinitionFormat.MSG:
        return get_types_from_msg(data, conn.msgtype)
    separator = "=" * 80 + "\n"
    idl_blocks = data.startswith(separator + "IDL: ")
    blocks = [b.split("\n", 1)[1] for b in data.split(separator)[1:]] if idl_blocks else [data]
    types: dict = {}
    for idl in blocks:
        types.update(get_types_from_idl(idl))
    return types


class _TolerantReader(AnyReader):
    """``AnyReader`` whose typestore is built per connection: a definition that does not parse,
    or does not match its stored hash, leaves its type out (listed in ``unreadable`` with the
    reason) instead of failing the whole bag. Messages of such a type are never deserialized."""

    def _open(self) -> None:
        assert self.stack
        for reader in self.readers:
            self.stack.enter_context(reader)
        connections = [c for r in self.readers for c in r.connections]
        described = [c for c in connections if c.msgdef.format != MessageDefinitionFormat.NONE]
        self.unreadable: dict[str, str] = {}
        types: dict = {}
        for conn in described:
            try:
                types.update(_stored_types(conn))
            except Exception as exc:  # rosbags raises several types for unparseable text
                self.unreadable[conn.msgtype] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120].rstrip(':')}"
        if not described and self.default_typestore is not None:
            types.update(self.default_typestore.fielddefs)
        store = get_typestore(Stores.EMPTY)
        store.register(types)
        if self.is2:
            for conn in described:
                if conn.digest and conn.msgtype not in self.unreadable:
                    try:
                        have = store.hash_rihs01(conn.msgtype)
                    except Exception as exc:  # a definition that names a type the bag lacks
                        have = f"unhashable ({type(exc).__name__})"
                    if have != conn.digest:
                        self.unreadable[conn.msgtype] = f"stored hash {conn.digest} != definition's {have}"
        self.connections = connections
        self.typestore = store


@dataclass
class TopicInfo:
    topic: str
    msgtype: str
    count: int


@dataclass
class OpenBag:
    """An opened bag: the reader plus the connections of each configured topic."""

    path: Path
    reader: AnyReader
    topics: dict[str, TopicInfo] = field(default_factory=dict)

    @property
    def unreadable(self) -> dict[str, str]:
        """Types whose stored definition could not be used -> why (their topics cannot be read)."""
        return getattr(self.reader, "unreadable", {})

    def connections(self, topic: str) -> list:
        return [c for c in self.reader.connections if c.topic == topic]

    def msgtype(self, topic: str) -> str:
        return normalize_msgtype(self.topics[topic].msgtype)

    def require(self, topic: str, allowed: tuple[str, ...], what: str) -> str:
        """Check a configured topic exists with an allowed type; return its (normalized) type."""
        if topic not in self.topics:
            available = ", ".join(sorted(self.topics)) or "none"
            raise IngestError(f"bag {self.path}: {what} topic {topic!r} not in bag (topics: {available})")
        for conn in self.connections(topic):
            if conn.msgtype in self.unreadable:
                raise IngestError(f"bag {self.path}, topic {topic}: the bag's definition of {conn.msgtype} cannot "
                                  f"be read ({self.unreadable[conn.msgtype]})")
        types = {normalize_msgtype(c.msgtype) for c in self.connections(topic)}
        if len(types) != 1 or not types <= set(allowed):
            raise IngestError(
                f"bag {self.path}, topic {topic}: {what} has type {', '.join(sorted(types))}, "
                f"expected {' or '.join(allowed)}"
            )
        return types.pop()

    def messages(self, topics: list[str]) -> Iterator[tuple[str, int, bytes, str]]:
        """(topic, receive time ns, raw bytes, msgtype) in receive order."""
        conns = [c for t in topics for c in self.connections(t)]
        if not conns:
            return
        for conn, t_ns, raw in self.reader.messages(connections=conns):
            yield conn.topic, t_ns, raw, conn.msgtype

    def deserialize(self, raw: bytes, msgtype: str) -> object:
        return self.reader.deserialize(raw, msgtype)

    def close(self) -> None:
        if self.reader.stack:
            self.reader.close()


def open_bag(path: Path) -> OpenBag:
    """Open one bag; any failure becomes an IngestError naming the bag."""
    try:
        reader = _TolerantReader([path], default_typestore=default_typestore())
        reader.open()
    except IngestError:
        raise
    except Exception as exc:  # rosbags raises many types for broken files (sqlite3, struct, mcap...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise IngestError(f"bag {path}: cannot open ({type(exc).__name__}: {first[:200]})") from exc
    try:
        _complete_typestore(reader)
        topics: dict[str, TopicInfo] = {}
        for conn in reader.connections:
            info = topics.setdefault(conn.topic, TopicInfo(conn.topic, conn.msgtype, 0))
            info.count += int(conn.msgcount or 0)
    except Exception as exc:
        reader.close()
        raise IngestError(f"bag {path}: cannot read type definitions ({type(exc).__name__}: {exc})") from exc
    return OpenBag(path=path, reader=reader, topics=topics)


def header_stamp_peeker(bag: OpenBag, msgtype: str) -> Callable[[bytes], int] | None:
    """A fast reader of header.stamp straight from the serialized bytes, or None.

    Deserializing a 640x480 Image just to learn its stamp costs as much as copying it; the
    header is the first field, at a fixed offset in both CDR (after the 4-byte encapsulation
    header) and ROS 1 (after the uint32 seq) serialization.
    """
    fields = bag.reader.typestore.fielddefs.get(msgtype)
    if not fields:
        return None
    first = fields[1][0] if fields[1] else None
    if first is None or first[0] != "header":
        return None
    if bag.reader.is2:

        def peek2(raw: bytes) -> int:
            fmt = "<iI" if raw[1] == 1 else ">iI"
            sec, nsec = struct.unpack_from(fmt, raw, 4)
            return sec * 1_000_000_000 + nsec

        return peek2

    def peek1(raw: bytes) -> int:
        sec, nsec = struct.unpack_from("<II", raw, 4)
        return sec * 1_000_000_000 + nsec

    return peek1


def message_stamp(msg: object, receive_ns: int, use_header: bool) -> tuple[int, bool]:
    """(stamp ns, from_header): header stamp when present and non-zero, else receive time."""
    header = getattr(msg, "header", None)
    if use_header and header is not None:
        stamp = header.stamp
        ns = int(getattr(stamp, "sec", 0)) * 1_000_000_000 + int(
            getattr(stamp, "nanosec", getattr(stamp, "nsec", 0))
        )
        if ns > 0:
            return ns, True
    return int(receive_ns), False


def sort_by_stamp(stamps: list[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """(sorted stamps, order, out-of-order count): stable sort; a message counts as out of order
    when its stamp is earlier than a stamp already seen on the same topic."""
    arr = np.asarray(stamps, dtype=np.int64)
    if arr.size == 0:
        return arr, np.zeros(0, dtype=np.int64), 0
    running = np.maximum.accumulate(arr)
    late = int(np.count_nonzero(arr[1:] < running[:-1]))
    order = np.argsort(arr, kind="stable")
    return arr[order], order, late
