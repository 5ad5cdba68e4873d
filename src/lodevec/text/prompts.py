"""Task prefixes ("prompts"): which tasks exist and how a text is prefixed for one.

Each architecture declares its own prefixes (``lodevec.arch``); this module applies them.
"""

from __future__ import annotations

from ..arch import TASKS


def validate_task(task: str | None) -> str:
    """Normalise a task name; ``None`` means ``"none"`` (text used as given)."""
    task = "none" if task is None else task
    if task not in TASKS:
        raise ValueError(f"task {task!r} is not valid; choose one of {', '.join(TASKS)}")
    return task


def apply_prompt(text: str, task: str, prompts: dict[str, str]) -> str:
    """Prefix ``text`` for ``task``; never twice: a text that already starts with any of
    the model's prefixes is left as it is."""
    prefix = prompts.get(task)
    if not prefix or any(text.startswith(p) for p in prompts.values()):
        return text
    return prefix + text
