"""ROS-free simulated tabletop arm: the embedded default's "robot" (MuJoCo).

``TabletopSim`` steps a mocap-driven gripper with the policy's 7-DoF end-effector deltas,
renders the fixed camera offscreen and checks task success; ``ScriptedExpert`` is the
"teleoperator" that produces demonstrations. The ROS nodes live in ``actdistill_ros.nodes``.
"""

from .config import SimConfig
from .gl_backend import RenderBackendError
from .tasks import TASKS, TaskSpec

__all__ = ["TASKS", "RenderBackendError", "SimConfig", "TaskSpec"]
