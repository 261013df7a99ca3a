"""consensus: a panel of LLMs answers, debates, and a synthesizer returns a consensus."""

import os as _os

# LiteLLM fetches a price list from the internet at import unless told not to (seconds of blocking).
_os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# LiteLLM's aiohttp pool caps connections per host at 500: a busy service queues behind it.
_os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT", "4000")
_os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT_PER_HOST", "2000")

from consensus.agreement import matches_gold, normalize_answer, score_agreement
from consensus.config import default_local_panel, load_panel, load_panel_file
from consensus.engine import DebateOptions, debate, run_debate
from consensus.errors import (
    ConfigError,
    ConsensusError,
    LocalModelUnavailable,
    MissingKeyError,
    ProviderError,
    QuestionError,
)
from consensus.types import (
    Agreement,
    Consensus,
    DebateEvent,
    DebateResult,
    DebateSettings,
    DebateStatus,
    ModelAnswer,
    Panel,
    Round,
    Seat,
)

__all__ = [
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
