"""The README documents every configuration key the code accepts (its tables are what
scripts/config_tables.py prints now) and starts with the two fresh-machine commands."""

import importlib.util
from pathlib import Path

from actdistill_ros.control.node_config import PARAMS
from actdistill_ros.distill_job.config import field_docs

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_first_lines_are_the_demo_and_test_commands():
    head = "\n".join(README.splitlines()[:6])
    assert "make demo" in head and "make test" in head


def test_every_policy_parameter_and_distill_key_is_documented():
    missing = [s.name for s in PARAMS if f"`{s.name}`" not in README]
    missing += [name for name, *_ in field_docs() if f"`{name}`" not in README]
    assert not missing, f"README lacks {missing}: rerun scripts/config_tables.py"


def test_configuration_tables_are_current():
    path = Path(__file__).resolve().parent.parent / "scripts" / "config_tables.py"
    spec = importlib.util.spec_from_file_location("config_tables", path)
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    assert tables.policy_table() in README, "README's policy table is stale: rerun scripts/config_tables.py"
    assert tables.markdown_table() in README, "README's distillation table is stale: rerun scripts/config_tables.py"
