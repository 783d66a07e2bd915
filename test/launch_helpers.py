"""Static checks of launch files (launch_ros is not installable outside a ROS distro)."""

from __future__ import annotations

import ast
from pathlib import Path


def declared_launch_arguments(path: Path) -> tuple[set[str], ast.Module]:
    """Names passed to DeclareLaunchArgument; each must have a description and a default."""
    tree = ast.parse(path.read_text())
    declared = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DeclareLaunchArgument":
            first = node.args[0]
            assert isinstance(first, ast.Constant), f"{path.name}: argument name must be a literal"
            declared.add(first.value)
            assert any(kw.arg == "description" for kw in node.keywords), first.value
            assert any(kw.arg == "default_value" for kw in node.keywords), first.value
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions, f"{path.name}: no generate_launch_description()"
    return declared, tree
