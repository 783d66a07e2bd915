"""Launch the simulated tabletop arm with the policy node driving it (the embedded default).

    ros2 launch actdistill_ros sim.launch.py                      # shipped student, AUTONOMY
    ros2 launch actdistill_ros sim.launch.py episodes:=5          # 5 episodes, then the launch ends
    ros2 launch actdistill_ros sim.launch.py teleop:=true initial_mode:=teleop
    ros2 launch actdistill_ros sim.launch.py checkpoint:=/path/to/teacher_or_student

sim_node publishes ``camera/image_raw``, ``instruction`` and ``/clock`` and steps the world
with the policy node's ``action``; every node runs on simulated time (``use_sim_time``). The
first episode (``seed``) starts once the policy node reports ``active`` (checkpoint loaded and
warmed up), then episodes follow one another (seed + 1, ...); ``episodes:=N`` ends the launch
after N of them (0: keep resetting). With ``teleop:=true`` the scripted teleoperator publishes
``teleop/twist`` + ``teleop/gripper`` into the policy node (TELEOP passes them through; in
AUTONOMY they override the policy). Reset episodes with
``ros2 service call /sim/reset actdistill_ros/srv/ResetEpisode "{seed: 3, task: reach_red}"``
and switch modes with ``ros2 service call /set_mode actdistill_ros/srv/SetMode "{mode: 2}"``
(inside ``namespace`` when given). Any node exiting ends the launch: the simulator never runs on
alone.
"""

import os  # noqa: I001  (ruff takes `launch` for first-party: the repo has a launch/ folder)

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from actdistill_ros import launching as check

PACKAGE = "actdistill_ros"
# Simulated time: /clock and the camera arrive on separate topics, so an image can be a control
# period "ahead" of the node's clock; clock skew is no concern with the simulator as the clock.
SIM_STAMP_SKEW_TOLERANCE_S = 0.5


def _launch_setup(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    log_level = check.choice("log_level", arg("log_level"), check.LOG_LEVELS)
    namespace = check.namespace("namespace", arg("namespace"))
    params_file = check.existing_file("params_file", arg("params_file"), allow_empty=True)
    teleop = check.boolean("teleop", arg("teleop"))
    sim_params = {
        "real_time_factor": check.positive_number("real_time_factor", arg("real_time_factor")),
        "initial_seed": check.integer("seed", arg("seed"), minimum=0),
        "episodes": check.integer("episodes", arg("episodes"), minimum=0),
        "auto_reset": True,
        "wait_for_node": "policy_node",
    }
    policy_overrides = {
        "use_sim_time": True,
        "stamp_skew_tolerance_s": SIM_STAMP_SKEW_TOLERANCE_S,
        "initial_mode": check.choice("initial_mode", arg("initial_mode"), check.MODES),
        "device": check.device("device", arg("device")),
        "autostart": check.boolean("autostart", arg("autostart")),
    }
    if arg("checkpoint"):
        policy_overrides["checkpoint"] = check.existing_directory("checkpoint", arg("checkpoint"))
    ros_args = ["--ros-args", "--log-level", log_level]
    sim = Node(package=PACKAGE, executable="sim_node", name="sim", namespace=namespace, output="screen",
               emulate_tty=True, parameters=[sim_params], arguments=ros_args)
    policy = Node(package=PACKAGE, executable="policy_node", name="policy_node", namespace=namespace,
                  output="screen", emulate_tty=True,
                  parameters=[*([params_file] if params_file else []), policy_overrides],
                  remappings=[("image", "camera/image_raw")], arguments=ros_args)
    nodes = [sim, policy]
    if teleop:
        nodes.append(Node(package=PACKAGE, executable="teleop_expert_node", name="teleop_expert",
                          namespace=namespace, output="screen", emulate_tty=True,
                          parameters=[{"use_sim_time": True}], arguments=ros_args))
    return nodes + [check.end_launch_on_exit(node) for node in nodes]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription(
        [
            DeclareLaunchArgument("checkpoint", default_value="",
                                  description="student or teacher checkpoint directory; empty: the shipped student"),
            DeclareLaunchArgument("device", default_value="auto", description="auto, cpu, cuda or cuda:N"),
            DeclareLaunchArgument("initial_mode", default_value="autonomy", description="teleop, shadow or autonomy"),
            DeclareLaunchArgument("teleop", default_value="false",
                                  description="also start the scripted teleoperator (teleop/twist, teleop/gripper): "
                                  "true or false"),
            DeclareLaunchArgument("real_time_factor", default_value="1.0",
                                  description="simulated seconds per wall second (a number > 0)"),
            DeclareLaunchArgument("seed", default_value="0", description="seed of the first episode (an integer >= 0)"),
            DeclareLaunchArgument("episodes", default_value="0",
                                  description="end the launch after this many episodes (0: keep resetting)"),
            DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "policy.yaml"),
                                  description="YAML file with the policy node parameters (ros__parameters under /**)"),
            DeclareLaunchArgument("autostart", default_value="true",
                                  description="configure and activate the policy node at start (true or false; "
                                  "false: the first episode waits for `ros2 lifecycle set`)"),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of every node"),
            DeclareLaunchArgument("log_level", default_value="info",
                                  description="log level of the nodes: debug, info, warn, error or fatal"),
            OpaqueFunction(function=_launch_setup),
        ]
    )
