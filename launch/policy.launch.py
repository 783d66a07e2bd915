"""Launch the ActDistill policy node (a managed node, configured and activated by default).

    ros2 launch actdistill_ros policy.launch.py \
        checkpoint:=/path/to/student device:=cuda namespace:=arm1 \
        image_topic:=/camera/color/image_raw instruction_topic:=/task/instruction \
        action_topic:=/arm1/ee_action log_level:=info

Parameters come from ``params_file`` (default: the package's ``config/policy.yaml``);
``checkpoint``, ``device`` and ``initial_mode``, when given, override the file. ``image_topic``
remaps the node's ``image`` topic and, with ``/compressed`` appended, its ``image/compressed``
topic. Topic arguments left at their defaults keep the node's relative names (which then resolve
inside ``namespace``). ``autostart:=false`` leaves the node unconfigured:
``ros2 lifecycle set /policy_node configure`` then ``activate``. ``dds_profile:=large_images``
runs the node with the package's Fast DDS profile for raw HD camera images
(``config/fastdds_large_images.xml``; the camera driver needs it too, see the README). A bad
argument stops the launch with one line naming it; the node exiting (e.g. a checkpoint it can not
load) ends the launch.
"""

import os  # noqa: I001  (ruff takes `launch` for first-party: the repo has a launch/ folder)

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from actdistill_ros import launching as check
from actdistill_ros.control.node_config import EXECUTORS

PACKAGE = "actdistill_ros"


def _config_dir() -> str:
    return os.path.join(get_package_share_directory(PACKAGE), "config")


def _launch_setup(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    log_level = check.choice("log_level", arg("log_level"), check.LOG_LEVELS)
    namespace = check.namespace("namespace", arg("namespace"))
    params_file = check.existing_file("params_file", arg("params_file"), allow_empty=True)
    dds_env = check.dds_profile("dds_profile", arg("dds_profile"), _config_dir())
    overrides = {"autostart": check.boolean("autostart", arg("autostart"))}
    if arg("checkpoint"):
        overrides["checkpoint"] = check.existing_directory("checkpoint", arg("checkpoint"))
    if arg("device"):
        overrides["device"] = check.device("device", arg("device"))
    if arg("initial_mode"):
        overrides["initial_mode"] = check.choice("initial_mode", arg("initial_mode"), check.MODES)
    if arg("executor"):
        overrides["executor"] = check.choice("executor", arg("executor"), EXECUTORS)

    remappings = []
    image_topic = check.topic("image_topic", arg("image_topic"))
    if image_topic != "image":
        remappings.append(("image", image_topic))
        remappings.append(("image/compressed", image_topic.rstrip("/") + "/compressed"))
    for name, default in (("instruction_topic", "instruction"), ("action_topic", "action")):
        topic = check.topic(name, arg(name))
        if topic != default:
            remappings.append((default, topic))

    parameters = [params_file] if params_file else []
    parameters.append(overrides)  # later entries win over the file

    node = Node(
        package=PACKAGE,
        executable="policy_node",
        name="policy_node",
        namespace=namespace,
        parameters=parameters,
        remappings=remappings,
        arguments=["--ros-args", "--log-level", log_level],
        additional_env=dds_env,
        output="screen",
        emulate_tty=True,
    )
    return [node, check.end_launch_on_exit(node)]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "checkpoint",
                default_value="",
                description="student (or teacher) checkpoint directory; empty: the value in params_file "
                "(there '' means the student shipped with the package)",
            ),
            DeclareLaunchArgument(
                "device",
                default_value="",
                description="inference device: auto, cpu, cuda or cuda:N; empty: the value in params_file",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(_config_dir(), "policy.yaml"),
                description="YAML file with the node's parameters (ros__parameters under /**)",
            ),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                description="configure and activate the (managed) node at start: true or false "
                "(false: `ros2 lifecycle set /policy_node configure`, then `activate`)",
            ),
            DeclareLaunchArgument(
                "initial_mode",
                default_value="",
                description="mode at start: teleop, shadow or autonomy; empty: the value in params_file",
            ),
            DeclareLaunchArgument(
                "executor",
                default_value="",
                description="what runs the node's callbacks: single_threaded or events (rclpy's EventsExecutor, "
                "ROS 2 Kilted or newer: less latency); empty: the value in params_file",
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
                "dds_profile",
                default_value="",
                description="Fast DDS profile of the node: '' (the environment's), large_images (raw HD "
                "camera images over shared memory; the camera driver needs it too) or an XML file",
            ),
            DeclareLaunchArgument(
                "log_level",
                default_value="info",
                description="log level of the node: debug, info, warn, error or fatal",
            ),
            OpaqueFunction(function=_launch_setup),
        ]
    )
