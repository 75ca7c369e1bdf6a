"""The one prompt template, applied the same way at training and at inference time."""

from __future__ import annotations

from stages.params import Prompt


def build(prompt: Prompt, dialogue: str) -> str:
    # str.replace, not str.format: dialogues may contain braces.
    return prompt.template.replace("{dialogue}", dialogue)


def build_all(prompt: Prompt, dialogues: list[str]) -> list[str]:
    return [build(prompt, d) for d in dialogues]
