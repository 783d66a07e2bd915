"""Runs over real ROS 2 nodes on the simulated tabletop: recording teleop demonstrations,
closed-loop evaluation of teacher and student, and the one-command embedded-default job.

Every node runs in its own process (as ``ros2 launch`` would start it) and talks over DDS;
the driver here only plays the role of the person at the keyboard: reset the scene, press
record, hand over to autonomy, take over again.
"""
