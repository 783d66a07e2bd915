"""pip install path (virtual environments, CI). On a ROS 2 distro, colcon builds the
package through CMakeLists.txt (ament_cmake + rosidl for msg/) instead."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "actdistill_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="ActDistill: action-guided layer-skipping students for VLA robot policies, as a ROS 2 package",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["assets/**/*", "assets/*"], f"{PACKAGE}.sim": ["assets/*.xml"]},
    data_files=[
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/msg", glob("msg/*.msg")),
        (f"share/{PACKAGE}/srv", glob("srv/*.srv")),
    ],
    install_requires=[
        "torch>=2.2",
        "transformers>=5.24",  # the oldest the tests pass with (5.23: KV-cached OpenVLA-style decoding differs)
        "peft>=0.13",  # LoRA adapters for memory-aware training (memory.lora_rank)
        "safetensors>=0.4",
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "rosbags>=0.10",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "pyyaml>=6",
        "pydantic>=2.5",  # the typed configs (core/typed_config.py), their validation and the node parameters
        "mujoco>=3.1",
        "num2words>=0.5",  # SmolVLM's processor imports it even for images
    ],
    extras_require={"dev": ["pytest>=7", "pytest-xdist>=3.5", "ruff>=0.5"]},
    entry_points={
        "console_scripts": [
            "actdistill = actdistill_ros.cli:main",
            "policy_node = actdistill_ros.nodes.policy_node:main",
            "distill_node = actdistill_ros.nodes.distill_node:main",
            "sim_node = actdistill_ros.nodes.sim_node:main",
            "teleop_expert_node = actdistill_ros.nodes.teleop_expert_node:main",
            "bag_recorder_node = actdistill_ros.nodes.bag_recorder_node:main",
        ]
    },
)
