"""Thin rclpy nodes on top of the ROS-free ``core`` and ``control`` packages."""
