"""Print the README's configuration tables from the code that defines the parameters, so the
documentation can not drift: ``python scripts/config_tables.py`` (test_readme checks that the
README holds exactly these tables)."""

from actdistill_ros.control.node_config import PARAMS
from actdistill_ros.distill_job.config import markdown_table


def policy_table() -> str:
    rows = ["| parameter | default | range | run-time | meaning |", "|---|---|---|---|---|"]
    for spec in PARAMS:
        bounds = "" if spec.range is None else f"{spec.range[0]:g} .. {spec.range[1]:g}"
        rows.append(f"| `{spec.name}` | `{spec.default!r}` | {bounds} | {'yes' if spec.runtime else ''} "
                    f"| {spec.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print("### Policy node (`config/policy.yaml`)\n")
    print(policy_table())
    print("\n### Distillation (`config/distill.yaml`, `distill_node` parameters, `actdistill distill --set`)\n")
    print(markdown_table())
