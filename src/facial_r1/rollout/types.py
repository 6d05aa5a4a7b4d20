"""What a rollout engine takes: raw chat text and an image, so an engine that does its own encoding (vLLM) fits."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class RolloutPrompt:
    """One prompt: the chat-formatted text (exactly what the model family's processor tokenises, with the
    family's single image placeholder where the image goes) and the image."""

    chat_text: str
    image: Image.Image
