"""Offline evaluation of a trained teacher/student pair: the benchmark (FLOPs, latency, layers
run, held-out action error, the accuracy-vs-compute curve; ``bench``) and the report plots
(``plots``, matplotlib headless). The closed-loop evaluation needs ROS: ``sim_ros``."""
