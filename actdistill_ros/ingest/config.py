"""Configuration of rosbag ingestion, validated up front so a typo fails before hours of decoding."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ActionSource = Literal["ee", "twist", "pose"]
ACTION_SOURCES: tuple[str, ...] = ("ee", "twist", "pose")


class IngestError(RuntimeError):
    """Ingestion cannot proceed; the message names the bag, the topic and the reason."""


@dataclass
class IngestConfig:
    """What to read from the bags and how to turn it into aligned episodes.

    ``bags``: one path or a list. A path may be a rosbag2 directory (with ``metadata.yaml``),
    a directory holding several of those (searched recursively), a bare ``.db3``/``.mcap``
    storage file (e.g. from a recording that crashed before writing ``metadata.yaml``) or a
    ROS 1 ``.bag`` file.

    Instruction: exactly one of ``instruction_topic`` (std_msgs/String) or ``instruction``
    (a fixed string for every bag, or a mapping from bag name -- the directory or file name --
    to a string).

    Timestamps: header stamps when the message has a header with a non-zero stamp
    (``use_header_stamps``), else the bag's receive time.
    """

    bags: str | Path | list[str | Path] = field(default_factory=list)
    image_topic: str = "/camera/image_raw"
    action_topic: str = "/teleop/ee_action"
    action_source: ActionSource = "ee"
    instruction_topic: str | None = None
    instruction: str | dict[str, str] | None = None
    # Gripper for 'twist'/'pose' (for 'ee' it comes from the action message):
    # std_msgs/Float64 or sensor_msgs/JointState (``gripper_joint`` or the first position).
    gripper_topic: str | None = None
    gripper_joint: str | None = None
    # Raw gripper values meaning fully open and fully closed; mapped to 0..1 and clipped.
    gripper_open_closed: tuple[float, float] = (0.0, 1.0)
    control_rate_hz: float = 10.0
    image_size: tuple[int, int] = (224, 224)  # (H, W)
    max_gap_s: float = 0.5
    min_episode_steps: int = 10
    # A repeated identical instruction message is a republish (latched/periodic publishers);
    # set True to start a new episode on every instruction message instead.
    split_on_instruction_message: bool = False
    use_header_stamps: bool = True
    cache_dir: str | Path | None = None

    def __post_init__(self) -> None:
        if isinstance(self.bags, (str, Path)):
            self.bags = [self.bags]
        self.bags = [Path(b) for b in self.bags]
        self.image_size = tuple(int(x) for x in self.image_size)  # type: ignore[assignment]
        self.gripper_open_closed = tuple(float(x) for x in self.gripper_open_closed)  # type: ignore[assignment]
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)
        self.validate()

    @property
    def bag_paths(self) -> list[Path]:
        return list(self.bags)  # type: ignore[arg-type]

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def period_ns(self) -> int:
        return int(round(1e9 / self.control_rate_hz))

    def validate(self) -> None:
        """Raise IngestError on the first inconsistent setting, naming it."""
        problems: list[str] = []
        if not self.bags:
            problems.append("bags: no bag path given")
        for name in ("image_topic", "action_topic"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{name}: must be a non-empty topic name, got {value!r}")
        if self.action_source not in ACTION_SOURCES:
            problems.append(
                f"action_source: {self.action_source!r} unknown, expected one of {ACTION_SOURCES}"
            )
        has_topic = bool(self.instruction_topic)
        has_fixed = self.instruction is not None
        if has_topic and has_fixed:
            problems.append("instruction_topic and instruction are both set: choose one instruction source")
        elif not has_topic and not has_fixed:
            problems.append("neither instruction_topic nor instruction is set: need one instruction source")
        if isinstance(self.instruction, str) and not self.instruction.strip():
            problems.append("instruction: empty string")
        if isinstance(self.instruction, dict):
            empty = [k for k, v in self.instruction.items() if not isinstance(v, str) or not v.strip()]
            if not self.instruction or empty:
                problems.append(f"instruction: mapping is empty or has empty entries {empty}")
        if self.gripper_topic and self.action_source == "ee":
            problems.append("gripper_topic: not used with action_source 'ee' (the gripper is in the message)")
        lo, hi = self.gripper_open_closed
        if len(self.gripper_open_closed) != 2 or lo == hi or not (math.isfinite(lo) and math.isfinite(hi)):
            problems.append(
                f"gripper_open_closed: need two distinct finite values, got {self.gripper_open_closed}"
            )
        if not (isinstance(self.control_rate_hz, (int, float)) and math.isfinite(self.control_rate_hz)) or (
            self.control_rate_hz <= 0
        ):
            problems.append(f"control_rate_hz: must be > 0, got {self.control_rate_hz}")
        if len(self.image_size) != 2 or min(self.image_size) <= 0:
            problems.append(f"image_size: must be (H, W) with positive sizes, got {self.image_size}")
        if not math.isfinite(self.max_gap_s) or self.max_gap_s <= 0:
            problems.append(f"max_gap_s: must be > 0, got {self.max_gap_s}")
        elif (
            self.control_rate_hz and self.control_rate_hz > 0 and self.max_gap_s < 1.0 / self.control_rate_hz
        ):
            problems.append(
                f"max_gap_s: {self.max_gap_s} is shorter than the control period "
                f"{1.0 / self.control_rate_hz:.4f} s: every tick would count as a gap"
            )
        if int(self.min_episode_steps) != self.min_episode_steps or self.min_episode_steps < 1:
            problems.append(f"min_episode_steps: must be an integer >= 1, got {self.min_episode_steps}")
        if problems:
            raise IngestError("invalid ingest config: " + "; ".join(problems))

    def instruction_for(self, bag: Path) -> str | None:
        """The fixed instruction of one bag (None when instructions come from a topic)."""
        if self.instruction is None or isinstance(self.instruction, str):
            return self.instruction
        return self.instruction.get(bag.name) or self.instruction.get(bag.stem)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings), used in the summary and the cache key."""
        out = asdict(self)
        out["bags"] = [str(b) for b in self.bag_paths]
        out["cache_dir"] = None if self.cache_dir is None else str(self.cache_dir)
        out["image_size"] = list(self.image_size)
        out["gripper_open_closed"] = list(self.gripper_open_closed)
        return out
