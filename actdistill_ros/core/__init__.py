"""ROS-free ActDistill core (torch). Importing it never imports rclpy.

Subpackages, by concern (each imports only those above it in this list):

* ``data``       -- the episode dataset on disk, the image path, the synthetic task (no torch);
* ``model``      -- teacher interface, TinyVLA, action heads, graph probes, router, routed
                    student, FLOPs, the checkpoint format;
* ``training``   -- teacher training, stage 1, stage 2, their loop, losses, memory options,
                    several processes, baselines, whole resumable runs;
* ``evaluation`` -- the offline teacher-vs-student benchmark and its plots.

Beside them: ``typed_config`` (the config machinery) and ``config`` (the model and training
configs), ``device``, ``progress``; ``policy`` (the deployable :class:`~.policy.Policy`:
``RoutedPolicy``, ``TeacherPolicy``, ``load_policy``), ``distributed`` (the torchrun entry
point) and ``demo`` (``actdistill demo``). docs/architecture.md has the whole picture.
"""
