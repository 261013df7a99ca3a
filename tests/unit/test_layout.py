"""The layering rules, walked with `ast` over the source (STYLE.md, "The shape"):

    consensus.cli  ->  service  ->  consensus (the core)  ->  consensus.providers  ->  consensus.types / errors

- no import cycle among the modules of consensus/ and service/ (imports inside functions count too);
- the core never imports service, the command-line root, or a web framework;
- the command-line root imports service only inside the commands that need it;
- service never imports the command-line root;
- providers import no protocol module (an answer schema reaches them as an argument);
- only the LiteLLM transport (and the embedded model's LiteLLM adapter) import litellm.
"""

from __future__ import annotations

import ast
import pathlib

import consensus

ROOT = pathlib.Path(__file__).resolve().parents[2]
LITELLM_ALLOWED = {"consensus/providers/litellm.py", "consensus/providers/local_litellm.py"}
PROVIDER_MAY_IMPORT = {"consensus.types", "consensus.errors"}
WEB = {"fastapi", "starlette", "uvicorn", "sqlalchemy", "service"}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, pathlib.Path]:
    return {module_name(p): p for top in ("consensus", "service") for p in (ROOT / top).rglob("*.py")}


def imports(path: pathlib.Path, *, top_level_only: bool = False) -> list[str]:
    """The modules a file imports; with top_level_only, not those imported inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if top_level_only:  # module level, including under `if`/`try` at module level
        nodes = [n for stmt in tree.body if not _in_function(stmt) for n in ast.walk(stmt)]
    else:
        nodes = list(ast.walk(tree))
    out: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def _in_function(stmt: ast.stmt) -> bool:
    """A function or class body, or an `if TYPE_CHECKING:` block (imports for annotations only, never run)."""
    if isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Name) and stmt.test.id == "TYPE_CHECKING":
        return True
    return isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)


def _resolve(name: str, known: set[str]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, set[str]]:
    mods = sources()
    known = set(mods)
    edges: dict[str, set[str]] = {}
    for mod, path in mods.items():
        targets = {_resolve(n, known) for n in imports(path)}  # imports inside functions count too
        edges[mod] = {t for t in targets if t and t != mod and not mod.startswith(t + ".") and t != "consensus"}
    return edges


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_the_core_never_imports_service_the_cli_root_or_a_web_framework() -> None:
    for mod, path in sources().items():
        if not mod.startswith("consensus") or mod.startswith("consensus.cli") or mod == "consensus.__main__":
            continue  # the command line (and `python -m consensus`, its entry point) may import the service
        for name in imports(path):
            assert name.split(".")[0] not in WEB, (mod, name)
            assert not name.startswith("consensus.cli"), (mod, name)


def test_the_cli_root_imports_service_only_inside_commands() -> None:
    for mod, path in sources().items():
        if mod.startswith("consensus.cli"):
            for name in imports(path, top_level_only=True):
                assert name.split(".")[0] not in WEB, (mod, name)


def test_service_never_imports_the_cli_root() -> None:
    for mod, path in sources().items():
        if mod.startswith("service"):
            for name in imports(path):
                assert not name.startswith("consensus.cli"), (mod, name)


def test_providers_import_no_protocol_module() -> None:
    for mod, path in sources().items():
        if not mod.startswith("consensus.providers"):
            continue
        for name in imports(path):
            if name.startswith("consensus.") and not name.startswith("consensus.providers"):
                assert any(name == m or name.startswith(m + ".") for m in PROVIDER_MAY_IMPORT), (mod, name)


def test_only_the_litellm_transport_imports_litellm() -> None:
    for path in (ROOT / "consensus").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        for name in imports(path):
            if name.split(".")[0] == "litellm":
                assert rel in LITELLM_ALLOWED, (rel, name)


def test_public_api_is_pinned() -> None:
    assert sorted(consensus.__all__) == consensus.__all__
    for name in consensus.__all__:
        assert hasattr(consensus, name)
    assert {"run_debate", "debate", "DebateResult", "load_panel", "Panel"} <= set(consensus.__all__)
