"""ActDistill for ROS 2: action-guided layer-skipping students for VLA robot policies.

The package is split by dependency weight (docs/architecture.md: the data flow, one paragraph
per package, where a change goes):

* ``actdistill_ros.core``        -- ROS-free model, training, export and benchmark code (torch);
* ``actdistill_ros.ingest``      -- ROS-free rosbag2 ingestion (``rosbags``);
* ``actdistill_ros.teachers``    -- ROS-free transformers VLMs as teachers;
* ``actdistill_ros.distill_job`` -- ROS-free distillation job: bags -> student + report;
* ``actdistill_ros.control``     -- ROS-free control-loop logic (safety, handoff, chunking);
* ``actdistill_ros.sim``         -- ROS-free simulated tabletop arm (MuJoCo);
* ``actdistill_ros.nodes``       -- thin rclpy nodes on top of the above;
* ``actdistill_ros.sim_ros``     -- runs over those nodes: recording, closed-loop evaluation;
* ``actdistill_ros.msg``         -- generated ROS 2 interfaces (built from ``msg/``).

The generated ``msg`` subpackage is installed by the CMake/rosidl build into the
interpreter's site-packages, possibly in a different directory from this source tree.
``extend_path`` merges every ``actdistill_ros`` directory on ``sys.path`` into one
package, so source checkouts, pip installs and colcon installs all see ``.msg``.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
