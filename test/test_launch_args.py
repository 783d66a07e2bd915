"""The launch files' argument checks (ROS-free): every bad value gives one line naming the argument,
the value and what is accepted (``ros2 launch`` prints it; test_ros2_launch.py checks that end to end)."""

from pathlib import Path

import pytest

from actdistill_ros import launching as check


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check.choice("log_level", "verbose", check.LOG_LEVELS),
         "launch argument 'log_level': 'verbose' is not one of debug, info, warn, error, fatal"),
        (lambda: check.choice("initial_mode", "auto", check.MODES),
         "launch argument 'initial_mode': 'auto' is not one of teleop, shadow, autonomy"),
        (lambda: check.integer("seed", "abc", minimum=0), "launch argument 'seed': 'abc' is not an integer >= 0"),
        (lambda: check.integer("episodes", "-2", minimum=0),
         "launch argument 'episodes': '-2' is not an integer >= 0"),
        (lambda: check.positive_number("real_time_factor", "0"),
         "launch argument 'real_time_factor': '0' is not a finite number > 0"),
        (lambda: check.positive_number("real_time_factor", "fast"),
         "launch argument 'real_time_factor': 'fast' is not a finite number > 0"),
        (lambda: check.boolean("teleop", "maybe"),
         "launch argument 'teleop': 'maybe' is not a boolean (true or false)"),
        (lambda: check.device("device", "tpu"),
         "launch argument 'device': 'tpu' is not a device: auto, cpu, cuda or cuda:N"),
        (lambda: check.namespace("namespace", "arm 1"), "launch argument 'namespace': 'arm 1' is not a ROS namespace"),
        (lambda: check.topic("image_topic", "/cam//raw"),
         "launch argument 'image_topic': '/cam//raw' is not a ROS topic"),
        (lambda: check.existing_file("params_file", "/nonexistent.yaml"),
         "launch argument 'params_file': '/nonexistent.yaml' is not an existing file"),
        (lambda: check.existing_directory("checkpoint", "/nonexistent"),
         "launch argument 'checkpoint': '/nonexistent' is not an existing directory"),
    ],
)
def test_bad_values_give_one_line_naming_the_argument_and_the_accepted_values(call, message):
    with pytest.raises(check.LaunchArgumentError) as info:
        call()
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_good_values_come_back_typed(tmp_path):
    assert check.choice("log_level", " WARN ", check.LOG_LEVELS) == "warn"
    assert check.choice("initial_mode", "", check.MODES, allow_empty=True) == ""
    assert check.integer("seed", "7", minimum=0) == 7
    assert check.positive_number("real_time_factor", "2.5") == 2.5
    assert check.boolean("teleop", "True") is True and check.boolean("teleop", "false") is False
    assert check.device("device", "cuda:1") == "cuda:1" and check.device("device", "", allow_empty=True) == ""
    assert check.namespace("namespace", "") == "" and check.namespace("namespace", "/robot/arm1/") == "/robot/arm1"
    assert check.topic("image_topic", "/camera/color/image_raw") == "/camera/color/image_raw"
    assert check.topic("action_topic", "ee_action") == "ee_action"
    (tmp_path / "p.yaml").write_text("{}")
    assert check.existing_file("params_file", str(tmp_path / "p.yaml")) == str(tmp_path / "p.yaml")
    assert check.existing_file("params_file", "", allow_empty=True) == ""
    assert check.existing_directory("checkpoint", str(tmp_path)) == str(tmp_path)


def test_dds_profile(tmp_path):
    config = Path(__file__).resolve().parent.parent / "config"
    assert check.dds_profile("dds_profile", "", str(config)) == {}
    env = check.dds_profile("dds_profile", "large_images", str(config))
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(config / "fastdds_large_images.xml")
    assert env["FASTRTPS_DEFAULT_PROFILES_FILE"] == env["FASTDDS_DEFAULT_PROFILES_FILE"]
    (tmp_path / "mine.xml").write_text("<dds/>")
    assert check.dds_profile("dds_profile", str(tmp_path / "mine.xml"), str(config))["FASTDDS_DEFAULT_PROFILES_FILE"] \
        == str(tmp_path / "mine.xml")
    with pytest.raises(check.LaunchArgumentError, match=r"launch argument 'dds_profile': 'huge' is not '' \(the "
                       r"environment's\), large_images or an existing Fast DDS XML profile file"):
        check.dds_profile("dds_profile", "huge", str(config))
