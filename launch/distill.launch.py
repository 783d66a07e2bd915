"""Launch the ActDistill distillation node (a one-shot job); the launch ends when the job does.

    ros2 launch actdistill_ros distill.launch.py \
        bags:=/data/demos instruction_topic:=/instruction output_dir:=/data/distill_run1 \
        teacher:=/data/teacher device:=cuda

Parameters come from ``params_file`` (default: the package's ``config/distill.yaml``); the other
arguments, when not empty, override the file. Progress: ``ros2 topic echo /distill_node/progress``
(inside ``namespace`` when given). Relaunching with the same ``output_dir`` resumes the job.
``ros2 launch`` exits 0 when the job is done, 1 when it failed (or an argument is bad, one line
naming it); Ctrl-C interrupts it (exit 0, resumable).
"""

import os  # noqa: I001  (ruff takes `launch` for first-party: the repo has a launch/ folder)

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from actdistill_ros import launching as check

PACKAGE = "actdistill_ros"
# launch argument -> node parameter, applied when the argument is not empty
OVERRIDES = ("bags", "dataset", "instruction_topic", "instruction", "teacher", "device", "output_dir")


def _default_params_file() -> str:
    return os.path.join(get_package_share_directory(PACKAGE), "config", "distill.yaml")


def _launch_setup(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    log_level = check.choice("log_level", arg("log_level"), check.LOG_LEVELS)
    namespace = check.namespace("namespace", arg("namespace"))
    params_file = check.existing_file("params_file", arg("params_file"), allow_empty=True)
    check.device("device", arg("device"), allow_empty=True)
    overrides = {name: arg(name) for name in OVERRIDES if arg(name)}
    parameters = [params_file] if params_file else []
    if overrides:
        parameters.append(overrides)  # later entries win over the file

    node = Node(
        package=PACKAGE,
        executable="distill_node",
        name="distill_node",
        namespace=namespace,
        parameters=parameters,
        arguments=["--ros-args", "--log-level", log_level],
        output="screen",
        emulate_tty=True,  # the training stages draw their progress bars on a terminal
    )
    # the node's exit status: 0 done, 1 failed, 2 bad configuration, 130 interrupted (Ctrl-C)
    on_exit = check.end_launch_on_exit(
        node, interrupted_codes=(130,), interrupted_note="relaunch with the same output_dir to resume")
    return [node, on_exit]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=_default_params_file(),
                description="YAML file with the job's parameters (ros__parameters under /**)",
            ),
            DeclareLaunchArgument(
                "bags",
                default_value="",
                description="rosbag (directory or file) or a directory of bags; empty: the value in params_file",
            ),
            DeclareLaunchArgument(
                "dataset",
                default_value="",
                description="an already-ingested dataset directory instead of bags; empty: the value in params_file",
            ),
            DeclareLaunchArgument(
                "instruction_topic",
                default_value="",
                description="instruction topic in the bags (std_msgs/String); empty: the value in params_file",
            ),
            DeclareLaunchArgument(
                "instruction",
                default_value="",
                description="one fixed instruction for every bag; empty: the value in params_file",
            ),
            DeclareLaunchArgument(
                "teacher",
                default_value="",
                description="teacher checkpoint directory; empty: the value in params_file "
                "(there '' means the teacher shipped with the package)",
            ),
            DeclareLaunchArgument(
                "device",
                default_value="",
                description="training device: auto, cpu, cuda or cuda:N; empty: the value in params_file",
            ),
            DeclareLaunchArgument(
                "output_dir",
                default_value="",
                description="job output directory (the same one resumes); empty: the value in params_file",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
            DeclareLaunchArgument(
                "log_level",
                default_value="info",
                description="log level of the node: debug, info, warn, error or fatal",
            ),
            OpaqueFunction(function=_launch_setup),
        ]
    )
