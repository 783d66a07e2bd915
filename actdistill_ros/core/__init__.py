"""ROS-free ActDistill core: TinyVLA teacher, graph probes, router, routed student, losses,
training stages, export and benchmarks. Importing it never imports rclpy."""
