"""bag_recorder_node: record topics over DDS into rosbag2 files (mcap or sqlite3) with rosbags.

The "record" button of a teleoperation session: ``recorder/start`` opens a new bag
(``<output_dir>/<prefix>_NNNN``), ``recorder/stop`` closes it. Messages are received
serialized (no deserialise/serialise round trip) and written with the message's arrival time
on the node clock (simulated time with ``use_sim_time``). Like ``ros2 bag record``, the
subscription QoS adapts to the publishers (transient-local publishers are recorded with a
transient-local subscription, best-effort ones best-effort), and the newest message of a
transient-local topic (e.g. the instruction) is written at the start of every bag.

==================================  =========  ==============================================
(each name in ``topics``)           sub        any type, discovered from the ROS graph
``recorder/start``                  srv        std_srvs/Trigger; message = the new bag's path
``recorder/stop``                   srv        std_srvs/Trigger; message = messages written
==================================  =========  ==============================================
"""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import StoragePlugin, Writer
from std_srvs.srv import Trigger

from actdistill_ros.ingest.reader import default_typestore

from .spin import run_node

NODE_NAME = "bag_recorder_node"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def message_class(type_name: str) -> type:
    """'pkg/msg/Name' -> the generated Python class (the package must be importable)."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class BagRecorderNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.output_dir = Path(str(self.declare_parameter("output_dir", "").value))
        self.topics = [str(t) for t in self.declare_parameter("topics", [""]).value if str(t)]
        storage = str(self.declare_parameter("storage", "mcap").value)
        self.prefix = str(self.declare_parameter("prefix", "episode").value)
        if not str(self.output_dir) or str(self.output_dir) == ".":
            raise ValueError("output_dir: required (where the bags go)")
        if not self.topics:
            raise ValueError("topics: name at least one topic to record")
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.storage = STORAGES[storage]
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._typestore = default_typestore()
        self._lock = threading.Lock()
        self._types: dict[str, str] = {}  # resolved topic name -> type
        self._latched_last: dict[str, bytes] = {}
        self._writer: Writer | None = None
        self._connections: dict[str, Any] = {}
        self._written = 0
        self._index = len(list(self.output_dir.glob(f"{self.prefix}_*")))
        self.create_service(Trigger, "recorder/start", self._on_start)
        self.create_service(Trigger, "recorder/stop", self._on_stop)
        self._discovery = self.create_timer(0.2, self._subscribe_discovered)

    # -- discovery --------------------------------------------------------------------------------
    def _resolve(self, topic: str) -> str:
        return self.resolve_topic_name(topic)

    def _subscribe_discovered(self) -> None:
        graph = dict(self.get_topic_names_and_types())
        for topic in self.topics:
            name = self._resolve(topic)
            if name in self._types or name not in graph:
                continue
            publishers = self.get_publishers_info_by_topic(name)
            if not publishers:
                continue
            type_name = graph[name][0]
            try:
                cls = message_class(type_name)
            except (ImportError, AttributeError, ValueError) as exc:
                self.get_logger().error(f"cannot record {name}: type {type_name} not importable ({exc})")
                self._types[name] = ""
                continue
            reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
            latched = all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers)
            qos = QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=100 if not latched else 1,
                reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            self.create_subscription(cls, name, lambda data, n=name, lt=latched: self._on_message(n, data, lt),
                                     qos, raw=True)
            self._types[name] = type_name
            self.get_logger().info(f"recording {name} [{type_name}]")

    def missing_topics(self) -> list[str]:
        return [t for t in self.topics if not self._types.get(self._resolve(t))]

    # -- recording --------------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_message(self, topic: str, data: bytes, latched: bool) -> None:
        with self._lock:
            if latched:
                self._latched_last[topic] = bytes(data)
            if self._writer is not None:
                self._write(topic, bytes(data), self._now_ns())

    def _write(self, topic: str, data: bytes, stamp_ns: int) -> None:
        assert self._writer is not None
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, self._types[topic], typestore=self._typestore)
            self._connections[topic] = conn
        self._writer.write(conn, stamp_ns, data)
        self._written += 1

    def start(self) -> Path:
        missing = self.missing_topics()
        if missing:
            raise RuntimeError(f"no publisher discovered yet for {', '.join(missing)}")
        with self._lock:
            if self._writer is not None:
                raise RuntimeError("already recording; call recorder/stop first")
            path = self.output_dir / f"{self.prefix}_{self._index:04d}"
            self._index += 1
            writer = Writer(path, version=9, storage_plugin=self.storage)
            writer.open()
            self._writer, self._connections, self._written = writer, {}, 0
            now = self._now_ns()
            for topic, data in self._latched_last.items():
                self._write(topic, data, now)
        return path

    def stop(self) -> int:
        with self._lock:
            if self._writer is None:
                raise RuntimeError("not recording")
            self._writer.close()
            self._writer = None
            return self._written

    def _on_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            response.message, response.success = str(self.start()), True
        except (RuntimeError, OSError, FileExistsError) as exc:
            response.message, response.success = str(exc), False
        return response

    def _on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            response.message, response.success = f"{self.stop()} messages", True
        except RuntimeError as exc:
            response.message, response.success = str(exc), False
        return response

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


def main(args: list[str] | None = None) -> int:
    return run_node(BagRecorderNode, NODE_NAME, (ValueError,), BagRecorderNode.close, args)

if __name__ == "__main__":
    sys.exit(main())
