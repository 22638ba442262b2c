"""The house's rules, read from the code's own imports: arrows point one way (views → services →
models; jobs → services), no import circles, and the README's map names what exists."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "jobs")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The project modules `path` imports (`from a.b import c` counts a.b, and a.b.c when
    that is a module)."""
    known = modules()
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in known and name.split(".")[0] in PACKAGES}


def is_view(name: str) -> bool:
    # The chat's own routes (app/chat/wire.py) are views too: they answer requests.
    return name.endswith((".views", ".wire")) or ".views_" in name


def is_service(name: str) -> bool:
    return name.startswith("app.") and (name.endswith(".service") or name.endswith(".models"))


def test_no_service_or_model_imports_jobs():
    """Services reach the worker through app.background, never by importing jobs."""
    wrong = {name: sorted(i for i in imports(path) if i.split(".")[0] == "jobs")
             for name, path in modules().items() if is_service(name)}
    assert {name: found for name, found in wrong.items() if found} == {}


def test_nothing_in_app_imports_jobs_but_the_factory():
    wrong = {name: sorted(i for i in imports(path) if i.split(".")[0] == "jobs")
             for name, path in modules().items() if name.startswith("app.")}
    assert {name: found for name, found in wrong.items() if found} == {}


def test_no_view_imports_another_view():
    wrong = {name: sorted(i for i in imports(path) if is_view(i) and i != name)
             for name, path in modules().items() if is_view(name)}
    assert {name: found for name, found in wrong.items() if found} == {}


def test_services_and_models_import_no_view():
    wrong = {name: sorted(i for i in imports(path) if is_view(i))
             for name, path in modules().items() if is_service(name)}
    assert {name: found for name, found in wrong.items() if found} == {}


def test_no_import_circles():
    """No two modules import each other, however far round: counted over every import, those
    inside functions too (an import moved into a function hides a circle, it does not end it).
    The package faces (`app`, the factory; `jobs`, the queue with its task modules) are left
    out: they import everything by design."""
    faces = set(PACKAGES)
    graph = {name: imports(path) - faces - {name} for name, path in modules().items()
             if name not in faces}
    circles, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_jobs_hold_only_tasks():
    """jobs/ keeps Huey tasks: each task module's functions are short and call an area's
    service; the work itself lives in app/."""
    long_ones = []
    for path in (ROOT / "jobs").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and path.name not in ("__init__.py",):
                lines = node.end_lineno - node.lineno + 1
                if lines > 15:
                    long_ones.append(f"{path.name}:{node.name} ({lines} lines)")
    assert long_ones == []


def readme_map() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Where things live\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, "the README has a 'Where things live' section"
    return match.group(1)


def test_readme_map_names_only_what_exists():
    """Every path the README's map names (in backticks) exists, so the map cannot drift."""
    named = re.findall(r"`((?:app|jobs|templates|tests|static)/[^`]*)`", readme_map())
    assert named, "the map names the project's folders and files"
    missing = [path for path in named if not (
        any(ROOT.glob(path)) if "*" in path else (ROOT / path.rstrip("/")).exists())]
    assert missing == []


def test_readme_map_names_every_area():
    """Each area package under app/ appears in the map (a new area is found in two hops)."""
    areas = sorted(p.name for p in (ROOT / "app").iterdir()
                   if p.is_dir() and (p / "__init__.py").exists())
    text = readme_map()
    assert [area for area in areas if f"app/{area}/" not in text] == []
