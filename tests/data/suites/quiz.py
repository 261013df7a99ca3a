"""A five-question quiz for Inspect AI, run against consensus's OpenAI-compatible endpoint (docs/suites.md).

Generative only: the scorer reads the answer text, since the endpoint has no log-probabilities to offer.

    inspect eval tests/data/suites/quiz.py --model openai-api/council/consensus --model-base-url http://127.0.0.1:8000/v1
"""

from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import json_dataset
from inspect_ai.scorer import includes
from inspect_ai.solver import generate


@task
def quiz() -> Task:
    """Each question asked once; a sample is right when the reply contains its target (any case)."""
    return Task(dataset=json_dataset(str(Path(__file__).with_name("quiz.jsonl"))), solver=generate(), scorer=includes())
