"""Launch the ActDistill policy node.

    ros2 launch actdistill_ros policy.launch.py \
        checkpoint:=/path/to/student device:=cuda namespace:=arm1 \
        image_topic:=/camera/color/image_raw instruction_topic:=/task/instruction \
        action_topic:=/arm1/ee_action log_level:=info

Parameters come from ``params_file`` (default: the package's ``config/policy.yaml``);
``checkpoint`` and ``device``, when given, override the file. ``image_topic`` remaps the
node's ``image`` topic and, with ``/compressed`` appended, its ``image/compressed`` topic.
Topic arguments left at their defaults keep the node's relative names (which then resolve
inside ``namespace``).
"""

import os  # noqa: I001  (ruff takes `launch` for first-party: the repo has a launch/ folder)

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "actdistill_ros"


def _default_params_file() -> str:
    return os.path.join(get_package_share_directory(PACKAGE), "config", "policy.yaml")


def _launch_setup(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    overrides = {}
    if arg("checkpoint"):
        overrides["checkpoint"] = arg("checkpoint")
    if arg("device"):
        overrides["device"] = arg("device")

    remappings = []
    image_topic = arg("image_topic")
    if image_topic and image_topic != "image":
        remappings.append(("image", image_topic))
        remappings.append(("image/compressed", image_topic.rstrip("/") + "/compressed"))
    for name, topic in (("instruction", arg("instruction_topic")), ("action", arg("action_topic"))):
        if topic and topic != name:
            remappings.append((name, topic))

    parameters = []
    if arg("params_file"):
        parameters.append(arg("params_file"))
    if overrides:
        parameters.append(overrides)  # later entries win over the file

    node = Node(
        package=PACKAGE,
        executable="policy_node",
        name="policy_node",
        namespace=arg("namespace"),
        parameters=parameters,
        remappings=remappings,
        arguments=["--ros-args", "--log-level", arg("log_level") or "info"],
        output="screen",
        emulate_tty=True,
    )
    return [node]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "checkpoint",
                default_value="",
                description="student checkpoint directory; empty: the value in params_file "
                "(there '' means the student shipped with the package)",
            ),
            DeclareLaunchArgument(
                "device",
                default_value="",
                description="inference device: auto, cpu, cuda or cuda:N; empty: the value in params_file",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=_default_params_file(),
                description="YAML file with the node's parameters (ros__parameters under /**)",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
            DeclareLaunchArgument(
                "image_topic",
                default_value="image",
                description="camera topic (sensor_msgs/Image); <image_topic>/compressed for CompressedImage",
            ),
            DeclareLaunchArgument(
                "instruction_topic",
                default_value="instruction",
                description="language instruction topic (std_msgs/String, latched)",
            ),
            DeclareLaunchArgument(
                "action_topic",
                default_value="action",
                description="output topic of the end-effector commands (actdistill_ros/EndEffectorAction)",
            ),
            DeclareLaunchArgument(
                "log_level",
                default_value="info",
                description="log level of the node: debug, info, warn, error or fatal",
            ),
            OpaqueFunction(function=_launch_setup),
        ]
    )
