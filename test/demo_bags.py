"""Synthetic demonstration bags written with ``rosbags`` (real rosbag2/ROS 1 files, no ROS), for
the tests and benchmarks/ingest_speed.py (which puts test/ on its path).

The scene encodes the frame index in the pixels (red = 4 + 8 * (frame % 32), green =
40 + 8 * (frame // 32), blue = 180; steps of 8 survive jpeg), so a test can tell exactly
which image was aligned to which tick, and a red/blue swap is visible. ``DemoBag`` records
everything written, stamps included, so tests compute the expected dataset independently of
the ingestion code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from actdistill_ros.ingest.reader import package_types

RAW_FORMATS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}
COMPRESSED_FORMATS = ("png", "jpeg")
DEFAULT_START_NS = 1_700_000_000_000_000_000
EE_TYPE = "actdistill_ros/msg/EndEffectorAction"


@dataclass
class DemoTopics:
    image: str = "/camera/image_raw"
    action: str = "/teleop/action"
    instruction: str = "/instruction"
    gripper: str = "/gripper"


@dataclass
class DemoBag:
    """What was written: per topic (header stamp ns, receive ns, value) in stamp order of writing."""

    path: Path
    storage: str
    topics: DemoTopics
    start_ns: int
    images: list[tuple[int, int, int]] = field(default_factory=list)  # (stamp, receive, frame)
    actions: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # raw values per source
    instructions: list[tuple[int, int, str]] = field(default_factory=list)
    grippers: list[tuple[int, int, float]] = field(default_factory=list)

    def image_stamps(self) -> np.ndarray:
        return np.array(sorted(s for s, _, _ in self.images), dtype=np.int64)

    def frame_at(self, stamp_ns: int) -> int:
        """Frame index of the latest image stamped at or before ``stamp_ns``."""
        return max((s, f) for s, _, f in self.images if s <= stamp_ns)[1]


def scene_rgb(frame: int, size: tuple[int, int]) -> np.ndarray:
    """The RGB image of one frame (uniform colour: exact through png, near-exact through jpeg)."""
    img = np.empty((*size, 3), dtype=np.uint8)
    img[..., 0] = 4 + 8 * (frame % 32)
    img[..., 1] = 40 + 8 * ((frame // 32) % 26)
    img[..., 2] = 180
    return img


def frame_of(rgb: np.ndarray) -> int:
    """Inverse of ``scene_rgb`` (tolerant to jpeg noise)."""
    r = int(round((float(rgb[..., 0].mean()) - 4) / 8))
    g = int(round((float(rgb[..., 1].mean()) - 40) / 8))
    return r + 32 * g


def _action_values(source: str, k: int, t: float, period: float) -> np.ndarray:
    if source == "ee":  # dx..dyaw, gripper, control_period
        return np.array(
            [0.01 + 0.001 * k, -0.002, 0.003 * (k % 5), 0.0, 0.001 * k, 0.02, (k % 10) / 10, period]
        )
    if source == "twist":  # vx..wz
        return np.array([0.1 + 0.01 * k, -0.05, 0.02, 0.0, 0.0, 0.3 if k % 2 else 0.1])
    yaw = 0.5 * t  # pose: x y z qx qy qz qw, rotating about z
    return np.array([0.3 + 0.1 * t, 0.05 * math.sin(t), 0.4, 0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)])


SERVICE_EVENT_TOPIC = "/add_two_ints/_service_event"
SERVICE_EVENT_TYPE = "example_interfaces/srv/AddTwoInts_Event"
SERVICE_EVENT_DEFINITION = "=" * 80 + "\nSRV: example_interfaces/srv/AddTwoInts\nint64 a\nint64 b\n---\nint64 sum\n"


def write_demo_bag(
    path: str | Path,
    storage: str = "mcap",
    *,
    num_frames: int = 30,
    image_rate_hz: float = 10.0,
    image_size: tuple[int, int] = (32, 40),
    image_format: str = "rgb8",
    action_source: str = "ee",
    action_rate_hz: float | None = None,
    action_offset_s: float = 0.0,
    duration_s: float | None = None,
    instructions: list[tuple[float, str]] | None = ((0.0, "pick up the red block"),),  # type: ignore[assignment]
    gripper: str | None = None,
    gripper_joint: str = "finger_joint",
    start_ns: int = DEFAULT_START_NS,
    receive_latency_ns: int = 2_000_000,
    gaps: list[tuple[float, float]] = (),  # type: ignore[assignment]
    nan_action_indices: tuple[int, ...] = (),
    swap_image_pairs: tuple[int, ...] = (),
    omit_topics: tuple[str, ...] = (),
    topics: DemoTopics | None = None,
    jpeg_quality: int = 95,
    texture: bool = False,
    service_events: int = 0,
) -> DemoBag:
    """Write one demonstration bag and return what was written.

    ``storage``: 'mcap' | 'sqlite3' (rosbag2 directory) or 'ros1' (a ``.bag`` file).
    ``image_format``: rgb8/bgr8/mono8/rgba8/bgra8 (Image), png/jpeg (CompressedImage); any other
    string is written as a 3-channel Image with that encoding (to test unknown encodings).
    ``action_source``: 'ee' (EndEffectorAction), 'twist' (TwistStamped), 'pose' (PoseStamped).
    ``gripper``: None, 'float64' (std_msgs/Float64) or 'joint_state' (sensor_msgs/JointState).
    ``gaps``: (start_s, duration_s) windows with no image and no action messages.
    ``swap_image_pairs``: image i is received after image i+1 (out-of-order header stamps).
    ``texture``: add seeded per-pixel noise (+-3 grey levels, frame still readable by
    ``frame_of``) so that resizing has something to get wrong.
    ``service_events``: that many messages on ``SERVICE_EVENT_TOPIC`` whose stored definition is
    the raw ``.srv`` text, as rosbag2 (Jazzy) records service introspection (rosbag2 issue 2365):
    a type rosbags cannot parse, beside the wanted topics (rosbag2 storages only).
    Header stamps are exact multiples of the periods; receive time = stamp + latency.
    """
    path = Path(path)
    topics = topics or DemoTopics()
    store = get_typestore(Stores.ROS1_NOETIC) if storage == "ros1" else get_typestore(Stores.LATEST)
    store.register(package_types())
    T = store.types
    bag = DemoBag(path=path, storage=storage, topics=topics, start_ns=start_ns)
    action_rate_hz = action_rate_hz or image_rate_hz
    duration_s = duration_s if duration_s is not None else num_frames / image_rate_hz

    def in_gap(t: float) -> bool:
        return any(a <= t < a + d for a, d in gaps)

    def header(stamp_ns: int, frame_id: str = "base") -> Any:
        stamp = T["builtin_interfaces/msg/Time"](
            sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000
        )
        if storage == "ros1":
            return T["std_msgs/msg/Header"](seq=0, stamp=stamp, frame_id=frame_id)
        return T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    out: list[tuple[int, str, str, Any]] = []  # (receive ns, topic, msgtype, message)

    # images
    height, width = image_size
    img_type = (
        "sensor_msgs/msg/CompressedImage" if image_format in COMPRESSED_FORMATS else "sensor_msgs/msg/Image"
    )
    for i in range(num_frames):
        t = i / image_rate_hz
        if in_gap(t):
            continue
        stamp = start_ns + round(t * 1e9)
        rgb = scene_rgb(i, image_size)
        if texture:
            noise = np.random.default_rng(i).integers(-3, 4, rgb.shape)
            rgb = np.clip(rgb.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        if image_format in COMPRESSED_FORMATS:
            ext = ".png" if image_format == "png" else ".jpg"
            params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if image_format == "jpeg" else []
            ok, enc = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
            assert ok
            msg = T[img_type](header=header(stamp, "cam"), format=image_format, data=enc.reshape(-1))
        else:
            channels = RAW_FORMATS.get(image_format, 3)
            conv = {
                "bgr8": cv2.COLOR_RGB2BGR,
                "mono8": cv2.COLOR_RGB2GRAY,
                "rgba8": cv2.COLOR_RGB2RGBA,
                "bgra8": cv2.COLOR_RGB2BGRA,
            }.get(image_format)
            pix = cv2.cvtColor(rgb, conv) if conv is not None else rgb
            if image_format == "mono8":
                pix = np.ascontiguousarray(rgb[..., 0])  # grey level = the red channel
            msg = T[img_type](
                header=header(stamp, "cam"),
                height=height,
                width=width,
                encoding=image_format,
                is_bigendian=0,
                step=width * channels,
                data=np.ascontiguousarray(pix).reshape(-1),
            )
        bag.images.append((stamp, stamp + receive_latency_ns, i))
        out.append((stamp + receive_latency_ns, topics.image, img_type, msg))
    for i in swap_image_pairs:  # image i arrives after image i+1: swap receive times
        a, b = i, i + 1
        ra, rb = out[a][0], out[b][0]
        out[a], out[b] = (rb, *out[a][1:]), (ra, *out[b][1:])
        bag.images[a] = (bag.images[a][0], rb, bag.images[a][2])
        bag.images[b] = (bag.images[b][0], ra, bag.images[b][2])

    # actions (+ gripper at the same instants)
    period = 1.0 / action_rate_hz
    n_actions = int(math.floor(duration_s * action_rate_hz + 1e-9))
    act_type = {
        "ee": EE_TYPE,
        "twist": "geometry_msgs/msg/TwistStamped",
        "pose": "geometry_msgs/msg/PoseStamped",
    }[action_source]
    V3 = T["geometry_msgs/msg/Vector3"]
    for k in range(n_actions):
        t = action_offset_s + k * period
        if in_gap(t):
            continue
        stamp = start_ns + round(t * 1e9)
        v = _action_values(action_source, k, t, period)
        if k in nan_action_indices:
            v = v.copy()
            v[0] = float("nan")
        if action_source == "ee":
            msg = T[EE_TYPE](
                header=header(stamp),
                linear=V3(x=v[0], y=v[1], z=v[2]),
                angular=V3(x=v[3], y=v[4], z=v[5]),
                gripper=float(v[6]),
                control_period=float(v[7]),
                source=1,
                chunk_length=0,
                chunk=np.zeros(0, dtype=np.float32),
            )
        elif action_source == "twist":
            tw = T["geometry_msgs/msg/Twist"](
                linear=V3(x=v[0], y=v[1], z=v[2]), angular=V3(x=v[3], y=v[4], z=v[5])
            )
            msg = T[act_type](header=header(stamp), twist=tw)
        else:
            pose = T["geometry_msgs/msg/Pose"](
                position=T["geometry_msgs/msg/Point"](x=v[0], y=v[1], z=v[2]),
                orientation=T["geometry_msgs/msg/Quaternion"](x=v[3], y=v[4], z=v[5], w=v[6]),
            )
            msg = T[act_type](header=header(stamp), pose=pose)
        bag.actions.append((stamp, stamp + receive_latency_ns, v))
        out.append((stamp + receive_latency_ns, topics.action, act_type, msg))
        if gripper is not None:
            g = (k % 10) / 10
            if gripper == "float64":
                gmsg, gtype = T["std_msgs/msg/Float64"](data=g), "std_msgs/msg/Float64"
            else:
                gtype = "sensor_msgs/msg/JointState"
                gmsg = T[gtype](
                    header=header(stamp),
                    name=["wrist", gripper_joint],
                    position=np.array([0.5, g]),
                    velocity=np.zeros(0),
                    effort=np.zeros(0),
                )
            # Float64 has no header: its receive time is its stamp.
            g_stamp = stamp if gripper == "joint_state" else stamp + receive_latency_ns
            bag.grippers.append((g_stamp, stamp + receive_latency_ns, g))
            out.append((stamp + receive_latency_ns, topics.gripper, gtype, gmsg))

    for t, text in instructions or ():
        recv = start_ns + round(t * 1e9)  # String has no header: receive time is the stamp
        bag.instructions.append((recv, recv, text))
        out.append((recv, topics.instruction, "std_msgs/msg/String", T["std_msgs/msg/String"](data=text)))

    for k in range(service_events):  # a request event: never deserialized, so any bytes will do
        out.append((start_ns + k * 100_000_000 + 1, SERVICE_EVENT_TOPIC, SERVICE_EVENT_TYPE, bytes(8)))

    out = [o for o in out if o[1] not in omit_topics]
    out.sort(key=lambda o: o[0])
    _write(path, storage, store, out)
    return bag


def _write(path: Path, storage: str, store: Any, out: list[tuple[int, str, str, Any]]) -> None:
    if storage == "ros1":
        from rosbags.rosbag1 import Writer as Writer1

        path.parent.mkdir(parents=True, exist_ok=True)
        with Writer1(path) as writer:
            conns: dict[str, Any] = {}
            for recv, topic, msgtype, msg in out:
                if topic not in conns:
                    conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
                writer.write(conns[topic], recv, store.serialize_ros1(msg, msgtype))
        return
    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"storage {storage!r}: expected mcap, sqlite3 or ros1")
    path.parent.mkdir(parents=True, exist_ok=True)
    with Writer(path, version=9, storage_plugin=plugins[storage]) as writer:
        conns = {}
        for recv, topic, msgtype, msg in out:
            if topic not in conns and msgtype == SERVICE_EVENT_TYPE:
                conns[topic] = writer.add_connection(topic, msgtype, msgdef=SERVICE_EVENT_DEFINITION,
                                                     rihs01="RIHS01_" + "0" * 64)
            elif topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(conns[topic], recv, msg if isinstance(msg, bytes) else store.serialize_cdr(msg, msgtype))
