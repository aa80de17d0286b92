"""The project's own modules a stage runs, found from the source (imports at any depth, lazy ones included):
what dvc.yaml must list as the stage's code deps."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("poisongate", "tasks", "flows")


def module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported(path: Path) -> set[str]:
    """Modules `path` imports. params.yaml's parser (config.py) is the exception: the imports inside its
    validators (the attack and detector registries, to check names) run when params.yaml is parsed, not in the
    stage, so only its module-level imports count."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if path == ROOT / "poisongate" / "config.py" else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # `from pkg import module`
    return {n for n in names if n.split(".")[0] in PACKAGES and module_path(n)}


def closure(module: str) -> set[Path]:
    """Every project file `module` needs; the detector registry loads every module of its package."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        path = module_path(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        parents = name.split(".")
        todo += [".".join(parents[:i]) for i in range(1, len(parents))]  # packages' __init__ run first
        todo += sorted(imported(path))
        if name == "poisongate.detectors.registry":
            todo += [f"poisongate.detectors.{p.stem}" for p in (ROOT / "poisongate" / "detectors").glob("*.py")]
    return seen


def stage_code(stage: str) -> list[str]:
    return sorted(p.relative_to(ROOT).as_posix() for p in closure(f"tasks.{stage}"))
