"""Fault injection for the reliability tests, read from ``TUNEDECK_FAULT_INJECTION``.

The setting is a comma-separated list of ``name=value`` pairs, for example
``oom_at_step=2`` (every attempt runs out of memory at step 2) or
``step_delay=0.2,eval_batch_delay=0.5`` (slow steps and evaluation batches, so that a test can
act while a stage is under way). Unset, every lookup is None and nothing changes.
"""

import time

from app.core.config import get_settings

KNOWN = {
    "oom_at_step",
    "step_delay",
    "validate_delay",
    "load_delay",
    "eval_batch_delay",
    "save_delay",
    "merge_delay",
    "parse_delay",
    "eval_item_delay",
}


def fault(name: str) -> float | None:
    """The injected value for ``name``, or None."""
    assert name in KNOWN, name
    for part in (get_settings().fault_injection or "").split(","):
        key, _, value = part.partition("=")
        if key.strip() == name and value.strip():
            return float(value)
    return None


def pause(name: str) -> None:
    """Sleep for the injected delay ``name`` (a stand-in for a slow stage)."""
    seconds = fault(name)
    if seconds:
        time.sleep(seconds)
