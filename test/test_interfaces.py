"""The generated interfaces (msg/, srv/): contents, and real Fast DDS traffic across processes.

rclpy and actdistill_ros.msg are imported inside the tests: without them the ``ros`` tests are
skipped by conftest.py (a pure-core environment), instead of failing at collection.
"""

from __future__ import annotations

import array
import math
import textwrap

import pytest

from conftest import spin_until

pytestmark = pytest.mark.ros

# A publisher node for the subprocess: publishes one EndEffectorAction every 50 ms until SIGINT.
PUBLISHER_CODE = textwrap.dedent(
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from actdistill_ros.msg import EndEffectorAction

    rclpy.init()
    node = rclpy.create_node("test_eef_publisher")
    pub = node.create_publisher(EndEffectorAction, "test_eef_action", 10)
    count = 0

    def tick():
        global count
        msg = EndEffectorAction()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = "tool0"
        msg.linear.x, msg.linear.y, msg.linear.z = 0.01, -0.02, 0.03
        msg.angular.z = 0.25
        msg.gripper = 0.75
        msg.control_period = 0.1
        msg.source = EndEffectorAction.SOURCE_POLICY
        msg.chunk_length = 2
        msg.chunk = [float(i) / 8 for i in range(14)]
        pub.publish(msg)
        count += 1

    node.create_timer(0.05, tick)
    print("PUBLISHER READY", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        print(f"published {count}", flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
    """
)

# A SetMode server for the subprocess: keeps the mode, answers with the previous one.
SERVER_CODE = textwrap.dedent(
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from actdistill_ros.srv import SetMode

    rclpy.init()
    node = rclpy.create_node("test_set_mode_server")
    state = {"mode": SetMode.Request.MODE_TELEOP}

    def handle(request, response):
        response.previous_mode = state["mode"]
        if request.mode > SetMode.Request.MODE_AUTONOMY:
            response.success = False
            response.message = f"unknown mode {request.mode}"
            return response
        state["mode"] = request.mode
        response.success = True
        response.message = f"mode {request.mode}: {request.reason}"
        return response

    node.create_service(SetMode, "test_set_mode", handle)
    print("SERVER READY", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    """
)


def test_end_effector_action_fields_and_constants():
    from actdistill_ros.msg import EndEffectorAction

    assert (
        EndEffectorAction.SOURCE_STOP,
        EndEffectorAction.SOURCE_HUMAN,
        EndEffectorAction.SOURCE_POLICY,
        EndEffectorAction.SOURCE_BLEND,
    ) == (0, 1, 2, 3)
    fields = EndEffectorAction.get_fields_and_field_types()
    assert fields == {
        "header": "std_msgs/Header",
        "linear": "geometry_msgs/Vector3",
        "angular": "geometry_msgs/Vector3",
        "gripper": "float",
        "control_period": "float",
        "source": "uint8",
        "chunk_length": "uint32",
        "chunk": "sequence<float>",
    }
    msg = EndEffectorAction()
    assert msg.source == EndEffectorAction.SOURCE_STOP
    assert len(msg.chunk) == 0
    msg.chunk = [0.1, 0.2, 0.3]
    assert isinstance(msg.chunk, array.array) and msg.chunk.typecode == "f"  # float32
    assert msg.chunk[0] == pytest.approx(0.1) and msg.chunk[0] != 0.1  # rounded to float32


def test_policy_status_mode_transition_and_set_mode():
    from actdistill_ros.msg import ModeTransition, PolicyStatus
    from actdistill_ros.srv import SetMode

    modes = (PolicyStatus.MODE_TELEOP, PolicyStatus.MODE_SHADOW, PolicyStatus.MODE_AUTONOMY)
    assert modes == (0, 1, 2)
    assert modes == (SetMode.Request.MODE_TELEOP, SetMode.Request.MODE_SHADOW, SetMode.Request.MODE_AUTONOMY)

    status_fields = PolicyStatus.get_fields_and_field_types()
    for name, kind in {
        "mode": "uint8",
        "mode_name": "string",
        "alarm": "boolean",
        "alarm_reason": "string",
        "inference_latency_ms": "float",
        "layers_executed": "uint16",
        "layers_total": "uint16",
        "flops_ratio": "float",
        "image_age_s": "float",
        "dropped_images": "uint32",
        "shadow_error": "float",
        "shadow_cosine": "float",
    }.items():
        assert status_fields[name] == kind, name
    assert ModeTransition.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "from_mode": "uint8",
        "to_mode": "uint8",
        "reason": "string",
    }
    assert SetMode.Request.get_fields_and_field_types() == {"mode": "uint8", "reason": "string"}
    assert SetMode.Response.get_fields_and_field_types() == {
        "success": "boolean",
        "message": "string",
        "previous_mode": "uint8",
    }


def test_serialization_round_trip_in_process():
    from rclpy.serialization import deserialize_message, serialize_message

    from actdistill_ros.msg import EndEffectorAction, PolicyStatus

    msg = EndEffectorAction(source=EndEffectorAction.SOURCE_BLEND, chunk_length=1, gripper=0.5)
    msg.chunk = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.5]
    back = deserialize_message(serialize_message(msg), EndEffectorAction)
    assert back == msg
    status = PolicyStatus(mode=PolicyStatus.MODE_SHADOW, mode_name="SHADOW", alarm=True, alarm_reason="x")
    assert deserialize_message(serialize_message(status), PolicyStatus) == status


def test_publish_subscribe_across_processes(make_node, ros_process):
    from actdistill_ros.msg import EndEffectorAction

    publisher = ros_process(PUBLISHER_CODE, name="eef_publisher")
    node = make_node("test_eef_subscriber")
    received: list[EndEffectorAction] = []
    node.create_subscription(EndEffectorAction, "test_eef_action", received.append, 10)
    publisher.wait_for_output("PUBLISHER READY")

    assert spin_until(lambda: len(received) >= 3, nodes=[node], timeout=30.0), (
        f"received {len(received)} EndEffectorAction messages over DDS"
    )
    msg = received[-1]
    assert msg.header.frame_id == "tool0"
    assert (msg.linear.x, msg.linear.y, msg.linear.z) == pytest.approx((0.01, -0.02, 0.03))
    assert msg.angular.z == pytest.approx(0.25)
    assert msg.gripper == pytest.approx(0.75)
    assert msg.source == EndEffectorAction.SOURCE_POLICY
    assert msg.chunk_length == 2
    assert list(msg.chunk) == pytest.approx([i / 8 for i in range(14)])
    assert msg.header.stamp.sec > 0

    assert publisher.stop() == 0, publisher.output()
    assert "published" in publisher.output()


def test_set_mode_service_across_processes(make_node, ros_process):
    from actdistill_ros.srv import SetMode

    server = ros_process(SERVER_CODE, name="set_mode_server")
    node = make_node("test_set_mode_client")
    client = node.create_client(SetMode, "test_set_mode")
    server.wait_for_output("SERVER READY")
    assert spin_until(client.service_is_ready, nodes=[node], timeout=30.0), "SetMode service not discovered"

    def call(mode: int, reason: str) -> SetMode.Response:
        future = client.call_async(SetMode.Request(mode=mode, reason=reason))
        assert spin_until(future.done, nodes=[node], timeout=15.0), "no SetMode response"
        return future.result()

    first = call(SetMode.Request.MODE_SHADOW, "test")
    assert first.success and first.previous_mode == SetMode.Request.MODE_TELEOP
    assert first.message == "mode 1: test"
    second = call(SetMode.Request.MODE_AUTONOMY, "go")
    assert second.success and second.previous_mode == SetMode.Request.MODE_SHADOW
    rejected = call(7, "bogus")
    assert not rejected.success and "unknown mode" in rejected.message
    assert rejected.previous_mode == SetMode.Request.MODE_AUTONOMY

    assert server.stop() == 0, server.output()


def test_spin_until_times_out(make_node):
    node = make_node("test_spin_until")
    start = node.get_clock().now()
    assert not spin_until(lambda: False, nodes=[node], timeout=0.3)
    elapsed = (node.get_clock().now() - start).nanoseconds / 1e9
    assert 0.25 <= elapsed < 5.0 and not math.isnan(elapsed)
