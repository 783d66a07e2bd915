"""Launch the simulated tabletop arm with the policy node driving it (the embedded default).

    ros2 launch actdistill_ros sim.launch.py                      # shipped student, AUTONOMY
    ros2 launch actdistill_ros sim.launch.py teleop:=true initial_mode:=teleop
    ros2 launch actdistill_ros sim.launch.py checkpoint:=/path/to/teacher_or_student

sim_node publishes ``camera/image_raw``, ``instruction`` and ``/clock`` and steps the world
with the policy node's ``action``; every node runs on simulated time (``use_sim_time``).
With ``teleop:=true`` the scripted teleoperator publishes ``teleop/twist`` +
``teleop/gripper`` into the policy node (TELEOP passes them through; in AUTONOMY they
override the policy). Reset episodes with
``ros2 service call /sim/reset actdistill_ros/srv/ResetEpisode "{seed: 3, task: reach_red}"``
and switch modes with ``ros2 service call /set_mode actdistill_ros/srv/SetMode "{mode: 2}"``.
"""

import os  # noqa: I001  (ruff takes `launch` for first-party: the repo has a launch/ folder)

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "actdistill_ros"


def _launch_setup(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    sim_time = {"use_sim_time": True}
    policy_params = [os.path.join(get_package_share_directory(PACKAGE), "config", "policy.yaml"),
                     {**sim_time, "initial_mode": arg("initial_mode"), "device": arg("device"),
                      **({"checkpoint": arg("checkpoint")} if arg("checkpoint") else {})}]
    nodes = [
        Node(package=PACKAGE, executable="sim_node", name="sim", output="screen", emulate_tty=True,
             parameters=[{"real_time_factor": float(arg("real_time_factor")), "initial_seed": int(arg("seed"))}]),
        Node(package=PACKAGE, executable="policy_node", name="policy_node", output="screen", emulate_tty=True,
             parameters=policy_params, remappings=[("image", "camera/image_raw")]),
    ]
    if arg("teleop").lower() in ("true", "1", "yes"):
        nodes.append(Node(package=PACKAGE, executable="teleop_expert_node", name="teleop_expert", output="screen",
                          emulate_tty=True, parameters=[sim_time]))
    return nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument("checkpoint", default_value="",
                                  description="student or teacher checkpoint; empty: the shipped student"),
            DeclareLaunchArgument("device", default_value="auto", description="auto, cpu, cuda or cuda:N"),
            DeclareLaunchArgument("initial_mode", default_value="autonomy", description="teleop, shadow or autonomy"),
            DeclareLaunchArgument("teleop", default_value="false",
                                  description="also start the scripted teleoperator (teleop/twist, teleop/gripper)"),
            DeclareLaunchArgument("real_time_factor", default_value="1.0",
                                  description="simulated seconds per wall second"),
            DeclareLaunchArgument("seed", default_value="0", description="seed of the first episode"),
            OpaqueFunction(function=_launch_setup),
        ]
    )
