"""The import DAG of docs/ARCHITECTURE.md, no globals, no utils modules."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "magi"
# package -> packages it must never import
FORBIDDEN = {
    "models": {"flow", "sampling", "training", "eval", "quant", "io", "parallel", "commands", "cli"},
    "flow": {"sampling", "training", "eval", "quant", "io", "parallel", "commands", "cli"},
    "sampling": {"training", "eval", "commands", "cli"},
    "io": {"models", "sampling", "training", "eval", "quant", "parallel", "commands", "cli"},
    "quant": {"models", "sampling", "training", "eval", "flow", "io", "parallel", "commands", "cli"},
    "parallel": {"sampling", "training", "eval", "quant", "flow", "commands", "cli"},
    "training": {"eval", "commands", "cli"},
    "physics": {"models", "sampling", "training", "eval", "quant", "flow", "parallel", "commands", "cli"},
}


def modules():
    return sorted(p for p in SRC.rglob("*.py"))


def imported_magi_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("magi."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("magi.")}
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_import_dag_no_globals(path):
    rel = path.relative_to(SRC)
    package = rel.parts[0] if len(rel.parts) > 1 else None
    bad = imported_magi_packages(path) & FORBIDDEN.get(package, set())
    assert not bad, f"{rel} imports {bad}"
    tree = ast.parse(path.read_text())
    assert not any(isinstance(n, ast.Global) for n in ast.walk(tree)), f"{rel} uses `global`"
    assert path.stem not in {"utils", "util", "helpers"}


def test_importing_magi_is_light():
    import subprocess
    import sys

    code = "import sys, magi, magi.config, magi.presets; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
