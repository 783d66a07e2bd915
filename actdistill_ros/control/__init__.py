"""ROS-free control-loop logic of the policy node: command safety, mode handoff between
human and policy, action-chunk execution, and the control tick that combines them
(:mod:`actdistill_ros.control.tick`).

Nothing here imports rclpy; the node in :mod:`actdistill_ros.nodes.policy_node` wires it up.
Commands are 7-D float vectors ``(dx, dy, dz, droll, dpitch, dyaw, gripper)``: per-control-step
position deltas (m), rotation deltas (rad) and an absolute gripper closure (0 open .. 1 closed).
"""
