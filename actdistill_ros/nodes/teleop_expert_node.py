"""teleop_expert_node: a scripted "human" on a spacemouse, for the simulated tabletop.

It watches the privileged episode state (``sim/episode``: where the gripper and the goal
are, what a person looking at the scene knows) and answers every simulator step with a
teleop command, exactly the messages a spacemouse teleop stack publishes:

==================================  =========  ==============================================
``sim/episode``                     sub        actdistill_ros/SimEpisode
``teleop/twist``                    pub        geometry_msgs/TwistStamped velocities (m/s, rad/s)
``teleop/gripper``                  pub        std_msgs/Float64 0 (open) .. 1 (closed)
==================================  =========  ==============================================

``enabled`` (runtime parameter) lets a test or a script take the hands off the spacemouse:
disabled, it publishes nothing, like a human who lets go.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from std_msgs.msg import Float64

from actdistill_ros.msg import SimEpisode
from actdistill_ros.sim.expert import ScriptedExpert

from .spin import run_node

NODE_NAME = "teleop_expert_node"


class TeleopExpertNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        rate = float(self.declare_parameter("control_rate_hz", 10.0).value)
        max_step = float(self.declare_parameter("max_step_m", 0.015).value)
        noise = float(self.declare_parameter("noise_m", 0.003).value)
        seed = int(self.declare_parameter("seed", 0).value)
        self.declare_parameter("enabled", True)
        if not rate > 0 or not max_step > 0 or noise < 0:
            raise ValueError(f"control_rate_hz and max_step_m must be > 0 and noise_m >= 0, got "
                             f"{rate}, {max_step}, {noise}")
        self._period = 1.0 / rate
        self._expert = ScriptedExpert(max_step_m=max_step, noise_m=noise, seed=seed)
        self._twist_pub = self.create_publisher(TwistStamped, "teleop/twist", 10)
        self._gripper_pub = self.create_publisher(Float64, "teleop/gripper", 10)
        self.create_subscription(SimEpisode, "sim/episode", self._on_episode, 10)

    def _on_episode(self, msg: SimEpisode) -> None:
        if not self.get_parameter("enabled").value:
            return
        grip = np.array([msg.grip_position.x, msg.grip_position.y, msg.grip_position.z])
        goal = np.array([msg.goal_position.x, msg.goal_position.y, msg.goal_position.z])
        action = np.zeros(7) if msg.done else self._expert.act(grip, goal)
        twist = TwistStamped()
        twist.header.stamp, twist.header.frame_id = msg.header.stamp, "base_link"
        velocity = action[:6] / self._period
        twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = (float(v) for v in velocity[:3])
        twist.twist.angular.x, twist.twist.angular.y, twist.twist.angular.z = (float(v) for v in velocity[3:])
        self._gripper_pub.publish(Float64(data=float(action[6])))
        self._twist_pub.publish(twist)


def main(args: list[str] | None = None) -> int:
    return run_node(TeleopExpertNode, NODE_NAME, (ValueError,), args=args)

if __name__ == "__main__":
    sys.exit(main())
