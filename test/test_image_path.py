"""One image message, two consumers: the pixels bag ingestion stores for training are the pixels
the policy node feeds the policy at deployment.

Ingestion reads a real rosbag2 file; the node is the real PolicyNode, here in the test's process so
that the policy's input can be observed, receiving the same serialized message over DDS.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from actdistill_ros.core.data.dataset import EpisodeDataset
from actdistill_ros.ingest import IngestConfig, ingest, open_bag

from demo_bags import DemoTopics, write_demo_bag
from policy_node_helpers import make_tiny_checkpoint, unique_namespace

TOPICS = DemoTopics()
SIZE = 64  # the tiny checkpoint's image size
INSTRUCTION = "reach the red cube"


def _ingested(tmp_path, image_format: str, image_size: tuple[int, int]):
    bag = write_demo_bag(tmp_path / "bag", "mcap", num_frames=12, image_size=image_size,
                         image_format=image_format, texture=True)
    config = IngestConfig(bags=bag.path, image_topic=TOPICS.image, action_topic=TOPICS.action,
                          instruction_topic=TOPICS.instruction, image_size=(SIZE, SIZE), min_episode_steps=3)
    result = ingest(config, tmp_path / "out")
    episode = EpisodeDataset.load(result.dataset_dir).episodes[0]
    row, frame = episode.images[5], bag.frame_at(int(episode.timestamps_ns[5]))
    opened = open_bag(bag.path)
    try:
        raws = [raw for _topic, _t, raw, _type in opened.messages([TOPICS.image])]
    finally:
        opened.close()
    return row, bytes(raws[frame])


@pytest.mark.ros
@pytest.mark.parametrize(
    ("image_format", "image_size"),
    [("bgr8", (150, 203)), ("rgb8", (97, 61)), ("mono8", (130, 130)), ("png", (200, 140))],
)
def test_one_message_gives_identical_pixels_through_ingestion_and_through_the_node(
    tmp_path, rclpy_context, image_format, image_size
):
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import String

    from actdistill_ros.nodes.policy_node import SUCCESS, PolicyNode

    stored, raw = _ingested(tmp_path, image_format, image_size)
    msg_type = CompressedImage if image_format == "png" else Image
    msg = deserialize_message(raw, msg_type)

    namespace = unique_namespace("img")
    checkpoint = make_tiny_checkpoint(tmp_path / "student")
    node = PolicyNode(context=rclpy_context, namespace=namespace, parameter_overrides=[
        Parameter("checkpoint", value=str(checkpoint)), Parameter("device", value="cpu"),
        Parameter("autostart", value=False), Parameter("warmup_iterations", value=1)])
    seen: list[np.ndarray] = []
    got = threading.Event()
    try:
        assert node.trigger_configure() == SUCCESS, node.configure_error
        student = node.policy.student
        forward_routed = student.forward_routed

        def spy(inputs):  # the real forward; only remembers the pixels the policy was fed
            pixels = inputs["pixels"][0].cpu().numpy()
            if pixels.any():  # not a warm-up pass (black frames)
                seen.append(pixels.copy())
                got.set()
            return forward_routed(inputs)

        student.forward_routed = spy
        assert node.trigger_activate() == SUCCESS
        client = rclpy.create_node("image_path_client", namespace=namespace, context=rclpy_context)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        client.create_publisher(String, "instruction", latched).publish(String(data=INSTRUCTION))
        topic = "image/compressed" if image_format == "png" else "image"
        images = client.create_publisher(msg_type, topic, 1)
        executor = MultiThreadedExecutor(context=rclpy_context)
        executor.add_node(node)
        executor.add_node(client)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        deadline = time.monotonic() + 30.0
        while not got.wait(0.2) and time.monotonic() < deadline:
            images.publish(msg)  # until discovery has matched and the worker has run once
        assert seen, "the node never fed the published image to the policy"
        assert seen[0].shape == stored.shape == (SIZE, SIZE, 3)
        np.testing.assert_array_equal(seen[0], stored)
    finally:
        node.shutdown()
        executor = locals().get("executor")
        if executor is not None:
            executor.shutdown()
        node.destroy_node()
