"""The one configuration of a distillation job, shared by ``distill_node`` and ``actdistill distill``.

A file is either a plain mapping (``key: value``) or a ROS 2 parameters file (``/**:`` or a node
name, then ``ros__parameters:``), so ``config/distill.yaml`` serves both the node
(``--ros-args --params-file``) and the CLI (``--config``). Dotted keys (``distill.loss.gamma``,
what ROS makes of nested parameters) and nested mappings are the same thing. Unknown keys are
errors, ``''`` means "not set" for optional strings (ROS parameters cannot be null).

The simple keys are mapped onto :class:`~actdistill_ros.ingest.IngestConfig` and
:class:`~actdistill_ros.core.config.DistillConfig`; ``distill.*`` (``teacher_training.*``) reach
every other field of DistillConfig (TeacherTrainConfig) but may not repeat a field that a simple
key owns (``distill.loss.keep_ratio`` is ``keep_ratio``): two places for one value would make
one of them silently lose.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field

from ..core.config import DistillConfig, TeacherTrainConfig
from ..core.typed_config import (
    ConfigError,
    Float,
    Int,
    config_dataclass,
    deep_merge,
    flatten,
    from_dict,
    parse_overrides,
    read_yaml_mapping,
    to_dict,
    unflatten,
)
from ..ingest.config import ACTION_SOURCES, IngestConfig, IngestError
from ..teachers.options import HFTeacherOptions

# DistillConfig / TeacherTrainConfig fields owned by a simple key (nested path -> simple key).
DISTILL_OWNED = {
    "loss.keep_ratio": "keep_ratio",
    "student.epochs": "epochs",
    "probe.epochs": "probe_epochs",
    "student.batch_size": "batch_size",
    "probe.batch_size": "batch_size",
    "device": "device",
}
TEACHER_OWNED = {"optim.batch_size": "batch_size", "device": "device"}


@config_dataclass
class DistillJobConfig:
    """Everything a distillation job needs; each field's description documents it (the README table,
    the node's ParameterDescriptors)."""

    bags: str | list[str] = Field("", description=(
        "Rosbags to ingest: a rosbag2 directory, a .mcap/.db3/ROS 1 .bag file, a directory searched "
        "recursively for bags, or a list of those. Exactly one of `bags` and `dataset`."
    ))
    dataset: str = Field("", description=(
        "An already-ingested dataset directory (dataset.json) to use instead of `bags`."
    ))
    image_topic: str = Field("/camera/image_raw", description=(
        "Camera topic in the bags (sensor_msgs/Image or CompressedImage)."
    ))
    instruction_topic: str = Field("", description=(
        "Language instruction topic (std_msgs/String); a new instruction starts a new episode. Exactly one of"
        " `instruction_topic` and `instruction` (with `bags`)."
    ))
    instruction: str = Field("", description="One fixed instruction for every bag, instead of `instruction_topic`.")
    action_topic: str = Field("/teleop/ee_action", description="Teleoperation command topic in the bags.")
    action_source: str = Field("ee", description=(
        "Type of `action_topic`: `ee` (actdistill_ros/EndEffectorAction deltas), `twist` (TwistStamped "
        "velocities, integrated over a control period) or `pose` (PoseStamped targets, differenced)."
    ))
    gripper_topic: str = Field("", description=(
        "With `twist`/`pose`: gripper topic (std_msgs/Float64 or sensor_msgs/JointState); '' = gripper 0."
    ))
    gripper_joint: str = Field("", description="JointState joint name of the gripper ('' = the first position).")
    control_rate_hz: Float = Field(10.0, gt=0, allow_inf_nan=False, description=(
        "Control rate the episodes are resampled to; the student acts at this rate [Hz]."
    ))
    max_gap_s: Float = Field(0.5, gt=0, allow_inf_nan=False, description=(
        "A gap in images or actions longer than this splits an episode [s]."
    ))
    min_episode_steps: Int = Field(10, ge=1, description=(
        "Episodes shorter than this are dropped (listed in the dataset summary) [steps]."
    ))
    image_size: Int = Field(0, ge=0, description="Stored (square) image size; 0 = the teacher's input size [px].")
    teacher: str = Field("", description=(
        "Teacher: an actdistill teacher checkpoint (e.g. from `actdistill train-teacher`), or a Hugging Face "
        "transformers model directory (LLaVA, Idefics3/SmolVLM, PaliGemma, Qwen2-VL, OpenVLA; detected from "
        "its config.json, options in `hf_teacher`, see docs/hf_teachers.md); '' = the teacher shipped with "
        "the package."
    ))
    train_teacher: bool = Field(False, description=(
        "Train a TinyVLA teacher on the data first (into `output_dir/teacher`; `teacher` must be ''); sizes "
        "and optimiser via `teacher_training.*`."
    ))
    keep_ratio: Float = Field(0.45, gt=0, le=1, description=(
        "Target fraction of decoder layers the student executes, in (0, 1] (DistillConfig.loss.keep_ratio)."
    ))
    epochs: Int = Field(15, gt=0, description="Stage-2 (distillation) epochs (DistillConfig.student.epochs).")
    probe_epochs: Int = Field(5, gt=0, description="Stage-1 (graph probe) epochs (DistillConfig.probe.epochs).")
    batch_size: Int = Field(32, gt=0, description="Batch size of every training stage (probe, student, teacher).")
    device: str = Field("auto", description="Training/benchmark device: auto (CUDA when available), cpu, cuda, cuda:N.")
    threads: Int = Field(0, ge=0, description="torch CPU threads for this job; 0 = torch's default (one per core).")
    output_dir: str = Field("", description=(
        "Required. Receives dataset/, runs/ (resumable state), student/ (the exported checkpoint), "
        "report.json, report.md and plots/. Rerunning with the same output_dir resumes."
    ))
    baselines: bool = Field(False, description=(
        "Also train and benchmark the baselines the learned router must beat, at the student's layer count "
        "and stage-2 budget: the greedily chosen best fixed layers fine-tuned (`static`) and untuned "
        "(`static_untuned`), and random layers per sample (`random`); checkpoints in "
        "`output_dir/baselines/<name>/`, numbers in report.json `baselines`."
    ))
    restart: bool = Field(False, description=(
        "Start over in `output_dir`: its runs/, student/, baselines/, report and the teacher it trained or "
        "prepared are removed first (the ingested dataset is reused while the bags and ingest settings are "
        "unchanged). Without it a rerun resumes, and one with other settings is an error naming them."
    ))
    report_eval_samples: Int = Field(1000, ge=0, description=(
        "Held-out samples for the report's action errors, evenly spread over the held-out episodes; 0 = all. "
        "(On the simulated arm 200 read a baseline up to 0.07 of the teacher's error off the whole set, 1000 "
        "within 0.001.)"))
    report_latency_iters: Int = Field(20, gt=0, description=(
        "Timed batch-1 forward passes per model (and per layer cap) in the report."
    ))
    distill: dict[str, Any] = Field(default_factory=dict, description=(
        "Advanced: any other DistillConfig field as a nested key, e.g. `distill.loss.gamma`, "
        "`distill.router.threshold`, `distill.student.lr`, `distill.student.checkpoint_every`, "
        "`distill.held_out_fraction`."
    ))
    hf_teacher: dict[str, Any] = Field(default_factory=dict, description=(
        "With a transformers model directory as `teacher`: the adapter's options, e.g. `hf_teacher.head` "
        "(regression, tokens, flow: a new head fitted on the demos first; action_tokens: OpenVLA's own), "
        "`hf_teacher.chunk_size`, `hf_teacher.prompt`, `hf_teacher.unnorm_key`, "
        "`hf_teacher.trust_remote_code`, `hf_teacher.dtype` (docs/hf_teachers.md)."
    ))
    teacher_training: dict[str, Any] = Field(default_factory=dict, description=(
        "Advanced, with `train_teacher`: TeacherTrainConfig fields, e.g. `teacher_training.model.num_layers`,"
        " `teacher_training.optim.epochs`."
    ))

    def validate(self) -> None:
        bags = self.bag_list
        if bool(bags) == bool(self.dataset.strip()):
            raise ConfigError("set exactly one of `bags` (rosbags to ingest) and `dataset` (an ingested dataset)")
        if not self.output_dir.strip():
            raise ConfigError("output_dir: required (where the dataset, checkpoints and report go)")
        out = Path(self.output_dir).expanduser()
        if out.exists() and not out.is_dir():
            raise ConfigError(f"output_dir: {out} exists and is not a directory")
        if bags:
            if bool(self.instruction_topic.strip()) == bool(self.instruction.strip()):
                raise ConfigError("set exactly one of `instruction_topic` and `instruction`")
            if self.action_source not in ACTION_SOURCES:
                raise ConfigError(f"action_source: {self.action_source!r}, expected one of {', '.join(ACTION_SOURCES)}")
            if self.gripper_topic.strip() and self.action_source == "ee":
                raise ConfigError("gripper_topic: not used with action_source 'ee' (the gripper is in the message)")
        if self.train_teacher and self.teacher.strip():
            raise ConfigError("teacher: leave empty with train_teacher: true (the teacher is trained into "
                              "output_dir/teacher)")
        if self.teacher_training and not self.train_teacher:
            raise ConfigError("teacher_training.*: only used with train_teacher: true")
        if self.hf_teacher and not self.teacher.strip():
            raise ConfigError("hf_teacher.*: only used when `teacher` is a transformers model directory")
        self.hf_teacher_options()
        self.distill_config()  # unknown/owned nested keys and bad values fail now, not hours later
        if self.train_teacher:
            self.teacher_train_config()

    # --------------------------------------------------------------------------- mappings

    @property
    def bag_list(self) -> list[str]:
        bags = [self.bags] if isinstance(self.bags, str) else list(self.bags)
        return [b for b in bags if b.strip()]

    def distill_config(self) -> DistillConfig:
        _reject_owned("distill", self.distill, DISTILL_OWNED)
        simple = {
            "loss": {"keep_ratio": self.keep_ratio},
            "student": {"epochs": self.epochs, "batch_size": self.batch_size},
            "probe": {"epochs": self.probe_epochs, "batch_size": self.batch_size},
            "device": self.device,
        }
        # on top of DistillConfig's own defaults (probe and student have different optimiser defaults)
        data = deep_merge(to_dict(DistillConfig()), _nested(self.distill, "distill"))
        return from_dict(DistillConfig, deep_merge(data, simple), prefix="distill.")

    def hf_teacher_options(self) -> HFTeacherOptions:
        """The transformers-teacher options (``hf_teacher.*``)."""
        return from_dict(HFTeacherOptions, _nested(self.hf_teacher, "hf_teacher"), prefix="hf_teacher.")

    def teacher_train_config(self) -> TeacherTrainConfig:
        _reject_owned("teacher_training", self.teacher_training, TEACHER_OWNED)
        simple = {"optim": {"batch_size": self.batch_size}, "device": self.device}
        data = deep_merge(to_dict(TeacherTrainConfig()), _nested(self.teacher_training, "teacher_training"))
        return from_dict(TeacherTrainConfig, deep_merge(data, simple), prefix="teacher_training.")

    def ingest_config(self, image_size: int, cache_dir: str | Path | None = None) -> IngestConfig:
        """The IngestConfig of these bags; ``image_size``: the teacher's (when ``image_size`` is 0)."""
        size = self.image_size or image_size
        try:
            return IngestConfig(
                bags=[Path(b).expanduser() for b in self.bag_list],
                image_topic=self.image_topic,
                action_topic=self.action_topic,
                action_source=self.action_source,  # type: ignore[arg-type]
                instruction_topic=self.instruction_topic.strip() or None,
                instruction=self.instruction.strip() or None,
                gripper_topic=self.gripper_topic.strip() or None,
                gripper_joint=self.gripper_joint.strip() or None,
                control_rate_hz=self.control_rate_hz,
                image_size=(size, size),
                max_gap_s=self.max_gap_s,
                min_episode_steps=self.min_episode_steps,
                cache_dir=cache_dir,
            )
        except IngestError as exc:
            raise ConfigError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def _nested(data: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    return unflatten(data)


def _reject_owned(where: str, data: dict[str, Any], owned: dict[str, str]) -> None:
    flat = flatten(_nested(data, where))
    for path, simple in owned.items():
        if path in flat:
            raise ConfigError(f"{where}.{path}: set the top-level key `{simple}` instead")


# ------------------------------------------------------------------------------- loading


def ros_parameters(data: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a ROS 2 params file (all ``<node>: ros__parameters:`` sections merged in
    file order), or ``data`` itself when it is a plain mapping."""
    sections = [v for v in data.values() if isinstance(v, dict) and "ros__parameters" in v]
    if not sections:
        return data
    if len(sections) != len(data):
        extra = [k for k, v in data.items() if not (isinstance(v, dict) and "ros__parameters" in v)]
        raise ConfigError(f"mixes a ROS parameters file with plain keys {extra}")
    merged: dict[str, Any] = {}
    for section in sections:
        params = section["ros__parameters"] or {}
        if not isinstance(params, dict):
            raise ConfigError("ros__parameters: expected a mapping")
        merged = deep_merge(merged, unflatten(params))
    return merged


def config_from_mapping(data: dict[str, Any]) -> DistillJobConfig:
    """Build and validate a DistillJobConfig from a (possibly dotted / ROS-wrapped) mapping."""
    if not isinstance(data, dict):
        raise ConfigError(f"a distill config must be a mapping, got {type(data).__name__}")
    return from_dict(DistillJobConfig, unflatten(ros_parameters(data)))


def load_distill_job_config(path: str | Path | None, overrides: list[str] | None = None,
                            values: dict[str, Any] | None = None) -> DistillJobConfig:
    """Config from a YAML file (plain or ROS params format; None = defaults only) plus ``key=value``
    overrides (``--set``), then ``values`` taken as they are (command-line flags: a path is never
    parsed). Raises ConfigError naming the key on any problem."""
    data: dict[str, Any] = {}
    if path is not None:
        data = unflatten(ros_parameters(read_yaml_mapping(path)))
    if overrides:
        data = deep_merge(data, unflatten(parse_overrides(overrides)))
    if values:
        data = deep_merge(data, unflatten(values))
    return config_from_mapping(data)


def field_docs() -> list[tuple[str, str, Any, str]]:
    """(name, type, default, description) of every key: the README table and the node's parameters."""
    fields = DistillJobConfig.__dataclass_fields__
    return [(name, re.sub(r"\b(Int|Float)\b", lambda m: m.group(1).lower(), str(fields[name].type)),
             info.get_default(call_default_factory=True), info.description or "")
            for name, info in DistillJobConfig.__pydantic_fields__.items()]


def markdown_table() -> str:
    """The README table of the keys."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, typ, default, text in field_docs():
        shown = "`{}`" if isinstance(default, dict) else f"`{default!r}`" if isinstance(default, str) else (
            f"`{str(default).lower() if isinstance(default, bool) else default}`")
        escaped = typ.replace("|", "\\|")
        lines.append(f"| `{name}` | {escaped} | {shown} | {text} |")
    return "\n".join(lines) + "\n"
