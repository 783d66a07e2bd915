# Entry points. Every target sets up .venv first (idempotent: a no-op when nothing changed).
.PHONY: setup test demo demo-default lint shipped-checkpoints

setup:
	bash scripts/setup_env.sh

# the whole suite: ruff + pytest (ROS tests over real DDS, real rosbag2 files)
test: setup
	.venv/bin/python -m ruff check .
	.venv/bin/python -m pytest -q

# the main job on the embedded default: synthetic demonstrations -> teacher -> student -> benchmark
demo: setup
	.venv/bin/actdistill demo --quick --out runs/demo

# the benchmark size (README table); the teacher wants a GPU (hours on a 2-core CPU)
demo-default: setup
	.venv/bin/actdistill demo --preset default --out runs/default

# regenerate the small checkpoints shipped in actdistill_ros/assets (the policy node's default)
shipped-checkpoints: setup
	.venv/bin/actdistill demo --quick --out runs/shipped --device cpu --threads 2
	rm -rf actdistill_ros/assets/teacher_default actdistill_ros/assets/student_default
	cp -r runs/shipped/teacher actdistill_ros/assets/teacher_default
	cp -r runs/shipped/student actdistill_ros/assets/student_default

lint: setup
	.venv/bin/python -m ruff check .
