"""The tiny model's tokenizer: a byte-level BPE trained offline, in well under a second, on the project's own text.

Why not a real Qwen tokenizer: it would have to be downloaded (no network here) and its 151k-row embedding would
dwarf a sub-million-parameter model. A BPE trained on the prompt and reasoning text keeps the vocabulary at a few
hundred rows while every string still round-trips (byte-level).
"""

from __future__ import annotations

from collections.abc import Iterable

# The special tokens Qwen2.5-VL uses, in Qwen's order; <|endoftext|> doubles as pad.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Ordinary added tokens (not "special") so that decoding with skip_special_tokens=True keeps them.
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

# Qwen2.5-VL's chat template, minus the default system message (which would cost the tiny model ~10 tokens of
# nothing per sample). Real checkpoints keep their own template.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 768):
    """Train a byte-level BPE on ``corpus`` and wrap it as a transformers fast tokenizer (left padding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import TokenizersBackend

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = TokenizersBackend(
        tokenizer_object=bpe,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    tokenizer.add_tokens(list(TAG_TOKENS))
    return tokenizer
