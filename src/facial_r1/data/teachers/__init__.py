"""Teachers write the reference reasoning (``description``) of SFT samples.

- :class:`TemplateTeacher`: offline, deterministic, from the gold labels (optionally with :class:`TeacherNoise`'s
  random mistakes, or :class:`LLMLikeNoise`'s systematic ones: ``teacher=llm_like``).
- :class:`OpenAITeacher`: any OpenAI-compatible chat-completions API, ground-truth-conditioned, cached, validated.

Every teacher has ``describe(record) -> str | None`` and ``describe_many(records, progress=True)``; configs live in
``conf/teacher/``.
"""

from facial_r1.data.teachers.llm_like import LLMLikeNoise
from facial_r1.data.teachers.noise import TeacherNoise
from facial_r1.data.teachers.openai import InvalidDescription, OpenAITeacher, TeacherError, check_description
from facial_r1.data.teachers.template import TemplateTeacher, build_sft_records, tokenizer_corpus

__all__ = [
    "InvalidDescription",
    "LLMLikeNoise",
    "OpenAITeacher",
    "TeacherError",
    "TeacherNoise",
    "TemplateTeacher",
    "build_sft_records",
    "check_description",
    "tokenizer_corpus",
]
