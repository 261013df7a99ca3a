"""The layout rules: the engine imports no web framework; only the gateway and local import litellm."""

import ast
import pathlib

import consensus

ROOT = pathlib.Path(__file__).resolve().parents[2]
LITELLM_ALLOWED = {"consensus/providers/gateway.py", "consensus/providers/local.py"}


def imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_engine_never_imports_the_web_layer_and_only_the_gateway_imports_litellm():
    for path in (ROOT / "consensus").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        for mod in imports(path):
            top = mod.split(".")[0]
            assert top not in {"fastapi", "starlette", "service", "uvicorn", "sqlalchemy"}, (rel, mod)
            if top == "litellm":
                assert rel in LITELLM_ALLOWED, (rel, mod)


def test_public_api_is_pinned():
    assert sorted(consensus.__all__) == consensus.__all__
    for name in consensus.__all__:
        assert hasattr(consensus, name)
    assert {"run_debate", "debate", "DebateResult", "load_panel", "Panel"} <= set(consensus.__all__)
