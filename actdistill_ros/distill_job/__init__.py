"""ROS-free distillation job: rosbags (or a dataset) -> routed student + report.

Shared by ``distill_node`` and ``actdistill distill``::

    from actdistill_ros.distill_job import load_distill_job_config, run_distill_job
    cfg = load_distill_job_config("config/distill.yaml", ["bags=demos/", "output_dir=runs/d1"])
    result = run_distill_job(cfg, progress=print)
    result.student_dir, result.report["flops_ratio"]
"""

from .config import DistillJobConfig, config_from_mapping, load_distill_job_config
from .job import USER_ERRORS, DistillJobError, JobResult, ProgressCallback, check_teacher, run_distill_job

__all__ = [
    "USER_ERRORS",
    "DistillJobConfig",
    "DistillJobError",
    "JobResult",
    "ProgressCallback",
    "check_teacher",
    "config_from_mapping",
    "load_distill_job_config",
    "run_distill_job",
]
