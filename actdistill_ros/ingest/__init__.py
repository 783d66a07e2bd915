"""ROS-free rosbag ingestion: teleoperated demonstrations -> aligned ``EpisodeDataset``.

Reads rosbag2 (sqlite3, mcap) and ROS 1 bags with ``rosbags``; no rclpy import. Entry point::

    from actdistill_ros.ingest import IngestConfig, ingest
    result = ingest(IngestConfig(bags="demos/", image_topic="/cam", action_topic="/ee_cmd",
                                 instruction_topic="/instruction"), "datasets/demos")
    result.dataset_dir, result.summary
"""

from .bag_images import decode_image, resize_rgb
from .bags_to_dataset import INGEST_VERSION, IngestProgress, IngestResult, ProgressCallback, cache_key, ingest
from .config import ACTION_SOURCES, IngestConfig, IngestError
from .reader import find_bags, open_bag
from .summary import SUMMARY_FILE

__all__ = [
    "ACTION_SOURCES",
    "INGEST_VERSION",
    "SUMMARY_FILE",
    "IngestConfig",
    "IngestError",
    "IngestProgress",
    "IngestResult",
    "ProgressCallback",
    "cache_key",
    "decode_image",
    "find_bags",
    "ingest",
    "open_bag",
    "resize_rgb",
]
