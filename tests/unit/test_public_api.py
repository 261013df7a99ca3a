"""The public exports of `consensus` are pinned, as httpx pins its own: adding or dropping one is a decision.

A change here is a change of the library's interface: say it in the changelog, and update EXPORTS.
"""

from types import ModuleType

import consensus

EXPORTS = [
    "Agreement",
    "ConfigError",
    "Consensus",
    "ConsensusError",
    "DebateEvent",
    "DebateOptions",
    "DebateResult",
    "DebateSettings",
    "DebateStatus",
    "LocalModelUnavailable",
    "MissingKeyError",
    "ModelAnswer",
    "Panel",
    "ProviderError",
    "QuestionError",
    "Round",
    "Seat",
    "debate",
    "default_local_panel",
    "load_panel",
    "load_panel_file",
    "matches_gold",
    "normalize_answer",
    "run_debate",
    "score_agreement",
]


def test_the_exports_are_exactly_these_in_sorted_order():
    assert consensus.__all__ == EXPORTS
    assert sorted(EXPORTS) == EXPORTS


def test_every_export_is_importable_from_the_package():
    for name in consensus.__all__:
        namespace: dict[str, object] = {}
        exec(f"from consensus import {name}", namespace)
        assert namespace[name] is getattr(consensus, name), name
    star: dict[str, object] = {}
    exec("from consensus import *", star)
    assert sorted(k for k in star if k != "__builtins__") == EXPORTS


def test_no_public_name_is_left_out_of_all():
    public = [k for k, v in vars(consensus).items() if not k.startswith("_") and not isinstance(v, ModuleType)]
    assert sorted(public) == EXPORTS
