# Entry points. Every target sets up .venv first (idempotent: a no-op when nothing changed).
.PHONY: setup launch-system test demo demo-quick eval compare demo-offline demo-default lint shipped-checkpoints

setup:
	bash scripts/setup_env.sh

# the ROS 2 launch system, the ros2 command and colcon, from the ros2-cli bundle (../shared/ros2-cli
# next to the checkout, or ACTDISTILL_ROS2_CLI_DIR); without them the launch tests are skipped
launch-system: setup
	bash scripts/setup_launch_system.sh

# the whole suite: ruff + pytest (ROS tests over real DDS, real rosbag2 files), in PYTEST_WORKERS
# processes (pytest-xdist; whole files per worker, each worker its own ROS domain; 0 = one process)
PYTEST_WORKERS ?= 2
test: setup
	.venv/bin/python -m ruff check .
	.venv/bin/python -m pytest -q $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile)

# the main job on the embedded default (simulated arm, all over ROS 2): record teleop demos to
# mcap -> distil the routed student from the shipped teacher -> closed-loop eval of both
# (`make shipped-checkpoints` is the same chain with the teacher trained on the bags too)
demo: setup
	.venv/bin/actdistill sim-job --out runs/sim_job --device cpu

# the same chain in a few minutes (too little training for a good policy)
demo-quick: setup
	.venv/bin/actdistill sim-job --quick --out runs/sim_job_quick --device cpu

# closed loop of the shipped teacher and student (50 seeded episodes per task + handoff)
eval: setup
	.venv/bin/actdistill eval --out runs/eval --json runs/eval/eval.json --device cpu

# does the learned router earn its keep? the main job plus the baselines (static pruning tuned and
# untuned, random routes; same layer count, same training budget), all in the same closed loop
compare: setup
	.venv/bin/actdistill sim-job --baselines --out runs/compare --device cpu

# offline only (no ROS, no simulator): synthetic images -> teacher -> student -> benchmark
demo-offline: setup
	.venv/bin/actdistill demo --quick --out runs/demo

# the offline benchmark size (README table); the teacher wants a GPU (hours on a 2-core CPU)
demo-default: setup
	.venv/bin/actdistill demo --preset default --out runs/default

# regenerate the checkpoints shipped in actdistill_ros/assets (the policy node's default):
# the main job with the teacher trained on the recorded bags too and the baselines, seed 0 (the README
# Results of the simulated arm; about 1.5 hours on a 2-core CPU)
shipped-checkpoints: setup
	.venv/bin/actdistill sim-job --train-teacher --baselines --out runs/shipped --device cpu --seed 0
	rm -rf actdistill_ros/assets/teacher_default actdistill_ros/assets/student_default
	cp -r runs/shipped/distill/teacher actdistill_ros/assets/teacher_default
	cp -r runs/shipped/distill/student actdistill_ros/assets/student_default

lint: setup
	.venv/bin/python -m ruff check .
