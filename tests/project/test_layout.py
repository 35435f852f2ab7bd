"""The tree stays readable: no import circle between the project's modules,
no module a newcomer cannot read in one sitting, nothing done at import time.
bench/'s scripts keep the same rules, and run as they are: no sys.path edits, no
script named like a module it would shadow."""

import ast
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("gan_pkg", "serving", "tuning")
BENCH = REPO / "bench"  # scripts, not a package
MAX_LINES = 500


def _bench_scripts() -> list[Path]:
    return sorted(BENCH.glob("*.py"))


def _modules() -> dict[str, Path]:
    """Every module the rules cover, by the name it is imported under: the packages' by dotted
    name, bench/'s scripts by file name (`python bench/x.py` puts bench/ first on sys.path,
    so a script imports its siblings by name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in _bench_scripts():
        found.setdefault(path.stem, path)  # a clash is test_no_bench_script_shadows_a_module's to report
    return found


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """First-party modules `name` imports anywhere in its body (lazy imports in functions count)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return result


def test_no_import_circle():
    modules = _modules()
    # A package's __init__ importing its own modules is not a circle; parent packages are not edges.
    graph = {name: {t for t in _imports(name, path, modules) if not name.startswith(t + ".")} for name, path in modules.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_is_short_enough_to_read(name):
    path = _modules()[name]
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} ({path.relative_to(REPO)}) has {lines} lines; split it by responsibility"


def _module_level_statements(tree: ast.Module):
    """Statements that run at import: the body, minus `if __name__ == "__main__":` blocks."""
    for node in tree.body:
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
            continue
        yield node


@pytest.mark.parametrize("name", sorted(_modules()))
def test_import_changes_neither_sys_path_nor_the_environment(name):
    tree = ast.parse(_modules()[name].read_text())
    for statement in _module_level_statements(tree):
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        text = ast.unparse(statement)
        assert "sys.path" not in text and "os.environ" not in text, f"{name} at import: {text}"


@pytest.mark.parametrize("path", _bench_scripts(), ids=lambda p: p.name)
def test_bench_scripts_leave_sys_path_alone(path):
    """Not even when run as scripts: with the package installed, `python bench/x.py` finds
    gan_pkg, serving, tuning and its sibling scripts as it is."""
    edits = [ast.unparse(node) for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Attribute) and node.attr == "path" and ast.unparse(node.value) == "sys"]
    assert edits == [], f"{path.name} edits sys.path: {edits}"


def test_no_bench_script_shadows_a_module(tmp_path):
    """bench/ comes first on a script's sys.path, so a script named like a module (bench/serving.py
    once: the serving package) would replace it for every import of that run. Asked of a fresh
    interpreter in an empty folder, the environment a script runs in minus bench/."""
    names = [path.stem for path in _bench_scripts()]
    code = "import importlib.util, sys; print(*(n for n in sys.argv[1:] if importlib.util.find_spec(n)))"
    found = subprocess.run([sys.executable, "-c", code, *names], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert found == [], f"rename these bench scripts: {found}"


# A measured figure: an FID, a throughput, a speed-up, or a duration something ran or took.
MEASUREMENT = re.compile(
    r"FID\s*(of\s*)?\d|\d\s*(img|images|steps)/s\b|\d(\.\d+)?(-\d+(\.\d+)?)?x (faster|slower)\b"
    r"|\b(took|ran|measured|gave)\b[^.]*\d[\d.,:]*\s*(ms|s|seconds|min|minutes)\b|\b\d+:\d\d\b"
)


def _comments_and_docstrings(path: Path):
    source = path.read_text()
    if path.suffix != ".py":
        yield from (line for line in source.splitlines() if line.lstrip().startswith("#"))
        return
    yield from (token.string for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(node):
            yield ast.get_docstring(node)


@pytest.mark.parametrize("path", [*sorted(_modules().values()), REPO / "Makefile"], ids=lambda p: str(p.relative_to(REPO)))
def test_comments_say_why_not_how_much(path):
    """Measured figures live in docs/BENCHMARKS.md, beside their command; code points there."""
    quoted = [line.strip() for text in _comments_and_docstrings(path) for line in text.splitlines() if MEASUREMENT.search(line)]
    assert quoted == [], f"move these figures to docs/BENCHMARKS.md and point to their section: {quoted}"


def test_the_measurement_finder_finds_figures():
    for text in ("FID 2.2-3.1 (five runs)", "393 img/s", "1.3-1.5x faster", "ran 3,014 in 238 s", "from 13:56 to 9:29"):
        assert MEASUREMENT.search(text), text
    for text in ("a 10 s grace period", "TF Serving's --rest_api_timeout_in_ms default", "val FID", "1h30m"):
        assert not MEASUREMENT.search(text), text
