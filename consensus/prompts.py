"""Load and render prompts/*.md with strict single-pass substitution."""

from __future__ import annotations

import string
from functools import cache
from importlib import resources

TEMPLATES = (
    "panelist.system.md",
    "opening.user.md",
    "debate.user.md",
    "synthesis.system.md",
    "synthesis.user.md",
    "analysis.system.md",
    "analysis.user.md",
    "thread.user.md",
)


@cache
def load_template(name: str) -> string.Template:
    """The template file `name` from the installed prompts package."""
    if name not in TEMPLATES:
        raise KeyError(f"unknown prompt template {name!r}")
    text = resources.files("prompts").joinpath(name).read_text(encoding="utf-8")
    return string.Template(text)


def render(name: str, **variables: object) -> str:
    """Render a template; raises KeyError when a variable is missing."""
    return load_template(name).substitute({k: str(v) for k, v in variables.items()}).strip()


def template_variables(name: str) -> set[str]:
    """The variable names a template uses."""
    return set(load_template(name).get_identifiers())
