"""The house's rules, read from the source with ast (nothing is imported): the wings and the floors
they stand on, no import running back up, no cycle, thin scripts, short functions, and the modules
that must stay free of PyTorch. `python -m tests.test_layout` prints the graph (docs/architecture.md)."""
import ast
import pathlib
import re
from graphlib import CycleError, TopologicalSorter

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Each room and its floor: a room imports only rooms on lower floors (docs/architecture.md).
FLOORS = {"errors": 1, "malloc": 1, "config": 2, "run_folder": 2, "data": 3, "model": 4, "decoding": 5,
          "training": 6, "export": 6, "serving": 6, "cli": 6, "benchmark": 7, "scripts": 8}
# Loaded by what must run without PyTorch: decoding an export, the command lines' checks, the GPU check.
TORCH_FREE = ["config", "errors", "run_folder", "malloc", "data.corpus", "data.tokenizer", "decoding.translator",
              "decoding.search_rules", "decoding.ctranslate2", "decoding.ctranslate2_folder", "serving.settings",
              "training.parent",
              "benchmark.machine", "benchmark.gpu_check"]
MAX_SCRIPT_LINES, MAX_FUNCTION_LINES, MAX_CLASS_LINES = 120, 60, 200


def _name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files() -> dict[str, pathlib.Path]:
    paths = [*(ROOT / "transformer_mt").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]
    return {_name(p): p for p in paths}


def imports(path: pathlib.Path, module: str, top_level_only: bool = False) -> set[str]:
    """The modules `path` imports (absolute names), all of them or those at module level."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: climb from this file's package
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + [base] * bool(base))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return found


def module_edges() -> set[tuple[str, str]]:
    files, edges = _files(), set()
    for module, path in files.items():
        for target in imports(path, module):
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target and target != module and files[target].name != "__init__.py":
                edges.add((module, target))
    return edges


def room(module: str) -> str:
    """scripts/ as one room, a wing as one room, a root module as itself."""
    return "scripts" if module.startswith("scripts.") else module.removeprefix("transformer_mt.").split(".")[0]


def room_edges() -> set[tuple[str, str]]:
    return {(room(a), room(b)) for a, b in module_edges() if room(a) != room(b)}


def cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as err:
        return err.args[1]
    return None


def test_at_most_15_rooms_and_60_arrows_every_one_pointing_down():
    edges = room_edges()
    rooms = {r for edge in edges for r in edge}
    assert rooms <= set(FLOORS), rooms - set(FLOORS)
    assert len(rooms) <= 15 and len(edges) <= 60, (len(rooms), len(edges))
    assert [(a, b) for a, b in edges if FLOORS[a] <= FLOORS[b]] == []
    assert cycle(edges) is None


def test_no_cycle_inside_any_wing():
    edges = module_edges()
    for wing in {room(a) for a, _ in edges} - {"scripts"}:
        assert cycle({(a, b) for a, b in edges if room(a) == room(b) == wing}) is None, wing


def test_scripts_are_thin_and_functions_and_classes_short():
    long_scripts = {p.name: n for p in (ROOT / "scripts").glob("*.py")
                    if (n := len(p.read_text().splitlines())) > MAX_SCRIPT_LINES}
    assert long_scripts == {}
    long_functions = []
    for path in [*(ROOT / "transformer_mt").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            most = {ast.FunctionDef: MAX_FUNCTION_LINES, ast.AsyncFunctionDef: MAX_FUNCTION_LINES,
                    ast.ClassDef: MAX_CLASS_LINES}.get(type(node))
            if most is not None and node.end_lineno - node.lineno + 1 > most:
                long_functions.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert long_functions == []


def test_what_must_run_without_pytorch_never_imports_it_at_module_level():
    """Followed through the package's own module-level imports (imports inside functions are the
    deferred ones, by design)."""
    files = _files()
    for start in TORCH_FREE:
        seen, todo = set(), [f"transformer_mt.{start}"]
        while todo:
            module = todo.pop()
            if module in seen or module not in files:
                continue
            seen.add(module)
            for target in imports(files[module], module, top_level_only=True):
                assert target.split(".")[0] != "torch", f"{start} imports torch through {module}"
                while target and target not in files:
                    target = target.rpartition(".")[0]
                todo.append(target)


def test_only_the_benchmark_wing_and_the_scripts_know_where_the_checkout_is():
    """The checkout, found by climbing from a module's own file (package data beside it is fine)."""
    climbing = re.compile(r"__file__\)\.resolve\(\)\.(parents\[|parent\.parent)")
    knowing = {str(p.relative_to(ROOT)) for p in (ROOT / "transformer_mt").rglob("*.py")
               if climbing.search(p.read_text())}
    assert knowing <= {"transformer_mt/benchmark/machine.py"}, knowing


if __name__ == "__main__":
    edges = room_edges()
    by_floor = sorted({r for e in edges for r in e}, key=lambda r: (FLOORS.get(r, 0), r))
    print(f"{len(by_floor)} rooms, {len(edges)} arrows, cycle: {cycle(edges)}")
    for name in by_floor:
        print(f"  {FLOORS.get(name, '?')} {name} -> {', '.join(sorted(b for a, b in edges if a == name))}")
