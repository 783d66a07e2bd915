"""The models: the teacher interface (``teacher``) and the built-in TinyVLA teacher
(``tiny_vla``), action heads, the training-only graph probes (``graph``), routers, the routed
student and its route-specialised execution (``route_exec``), FLOPs counted by running
(``flops``) and the deployable checkpoint format (``checkpoint``). Nothing here trains."""
