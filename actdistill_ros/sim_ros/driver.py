"""The in-process "operator" node: resets episodes, presses record, switches modes, watches."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from geometry_msgs.msg import TwistStamped
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from actdistill_ros.msg import EndEffectorAction, ModeTransition, PolicyStatus, SimEpisode
from actdistill_ros.srv import ResetEpisode, SetMode

from .processes import NodeGroup


class DriverError(RuntimeError):
    """A service did not answer, refused, or an episode did not finish in time."""


class Driver(Node):
    def __init__(self, group: NodeGroup | None = None, context: Any = None) -> None:
        super().__init__("actdistill_driver", context=context)
        self.group = group
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self)
        self.episodes: dict[int, SimEpisode] = {}  # newest status per episode id
        self.statuses: list[PolicyStatus] = []
        self.actions: list[EndEffectorAction] = []
        self.transitions: list[ModeTransition] = []
        self.create_subscription(SimEpisode, "sim/episode", self._on_episode, 50)
        self.create_subscription(PolicyStatus, "status", self.statuses.append, 50)
        self.create_subscription(EndEffectorAction, "action", self.actions.append, 50)
        self.create_subscription(ModeTransition, "mode_transitions", self.transitions.append, 10)
        self._service_clients: dict[str, Any] = {}
        self.first_override_action: int | None = None  # len(actions) when the first teleop twist arrived
        self._teleop_sub = None

    def watch_teleop(self, threshold: float = 1e-6) -> None:
        """Note where in ``actions`` the first non-zero teleop twist arrives (override latency)."""
        self.first_override_action = None

        def on_twist(msg: TwistStamped) -> None:
            t = msg.twist
            speed = max(abs(v) for v in (t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z))
            if self.first_override_action is None and speed > threshold:
                self.first_override_action = len(self.actions)

        if self._teleop_sub is None:
            self._teleop_sub = self.create_subscription(TwistStamped, "teleop/twist", on_twist, 50)

    def _on_episode(self, msg: SimEpisode) -> None:
        self.episodes[msg.episode] = msg

    # -- spinning ---------------------------------------------------------------------------------
    def spin_until(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if self.group is not None:
                self.group.check_alive()
            if time.monotonic() > deadline:
                raise DriverError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self._executor.spin_once(timeout_sec=0.02)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._executor.spin_once(timeout_sec=0.02)

    def call(self, srv_type: Any, name: str, request: Any, timeout_s: float = 30.0) -> Any:
        client = self._service_clients.get(name)
        if client is None:
            client = self._service_clients[name] = self.create_client(srv_type, name)
        self.spin_until(client.service_is_ready, timeout_s, f"service {name}")
        future = client.call_async(request)
        self.spin_until(future.done, timeout_s, f"the answer of {name}")
        return future.result()

    # -- the operator's actions -------------------------------------------------------------------
    def reset(self, seed: int, task: str) -> ResetEpisode.Response:
        response = self.call(ResetEpisode, "sim/reset", ResetEpisode.Request(seed=seed, task=task))
        if not response.success:
            raise DriverError(f"sim/reset refused: {response.message}")
        return response

    def wait_active(self, node: str, timeout_s: float) -> None:
        """Until lifecycle node ``node`` reports ``active`` on its ``get_state`` service.

        Asked, not inferred from its topics: a request is answered once discovery is done, while
        a message published before the subscription matched is simply gone."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            state = self.call(GetState, f"{node}/get_state", GetState.Request(), timeout_s=max(1.0, remaining))
            if state.current_state.id == State.PRIMARY_STATE_ACTIVE:
                return
            if time.monotonic() > deadline:
                raise DriverError(f"timed out after {timeout_s:.0f} s waiting for {node} to become active "
                                  f"(it is '{state.current_state.label}')")
            self.spin_for(0.2)

    def wait_episode_done(self, episode: int, timeout_s: float) -> SimEpisode:
        self.spin_until(lambda: episode in self.episodes and self.episodes[episode].done, timeout_s,
                        f"episode {episode} to finish")
        return self.episodes[episode]

    def trigger(self, name: str) -> str:
        response = self.call(Trigger, name, Trigger.Request())
        if not response.success:
            raise DriverError(f"{name} failed: {response.message}")
        return response.message

    def set_mode(self, mode: int, reason: str) -> None:
        response = self.call(SetMode, "set_mode", SetMode.Request(mode=mode, reason=reason))
        if not response.success:
            raise DriverError(f"set_mode refused: {response.message}")

    def set_parameter(self, node: str, name: str, value: Any) -> None:
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        response = self.call(SetParameters, f"{node}/set_parameters", request)
        if not response.results[0].successful:
            raise DriverError(f"{node}: setting {name} refused: {response.results[0].reason}")

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self.destroy_node()
