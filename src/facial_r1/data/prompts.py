"""Versioned prompt templates: the text a model (or an LLM teacher) reads after the image.

One :class:`PromptTemplate` renders three texts from a sample record (see ``data/schema.py``):

- :meth:`PromptTemplate.user_text`: question, requirements, the allowed labels of *this sample's* dataset, AU
  definitions for *this sample's* AU vocabulary, one worked example. Used for SFT inputs, rollouts and evaluation.
- :meth:`PromptTemplate.synthesis_text`: ``user_text`` plus the ground truth the response must agree with
  (stage-3 synthesis and API teachers).
- :meth:`PromptTemplate.reflection_text`: ``synthesis_text`` plus a previous response and what was wrong with it.
- :meth:`PromptTemplate.sft_text`: the one of the three an SFT row trains on (``user_text`` unless the row is an
  instruction row, see ``data/teachers/instructions.py``).

The image is not part of this text: the model adapter places it before the text.
Templates live in ``conf/prompt/*.yaml``; a changed wording gets a new ``version`` so results stay comparable.

Label choices (documented once, used by teachers too, see :func:`offered_labels`):
the allowed labels are the record's own ``label_set`` as a plain comma list, never the union over datasets. An AU-only
dataset (empty ``label_set``, e.g. DISFA) is offered the project's eight emotion words (``facs.EMOTIONS``): the model
still names the emotion its AUs point to, and the accuracy reward simply does not apply to such samples.
A record with an empty ``au_vocab`` (an emotion-only dataset) gets the definitions of the prompt's 30 AUs.
A labels line may also name ``{compounds}``: RAF-DB's 11 compound classes (``affect.COMPOUND_EMOTIONS``), offered to
every record alike so that the prompt never tells which faces are compound.

Affect prompts (``compact_affect_v1``) ask for levels inline and a ``<va>`` block; their synthesis block states the
gold levels, valence/arousal and compound through the optional ``synthesis_intensities`` / ``synthesis_va`` /
``synthesis_compound`` lines (None = left out, as in the basic prompts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facial_r1.affect import COMPOUND_EMOTIONS, INTENSITY_LETTERS
from facial_r1.facs import ACTION_UNITS, AU_VOCAB, EMOTIONS, au_number, sort_aus


def offered_labels(record: dict[str, Any]) -> list[str]:
    """The emotion words a prompt offers for ``record``: its dataset's label set, or all project words if empty."""
    return list(record.get("label_set") or EMOTIONS)


def defined_aus(record: dict[str, Any]) -> list[int]:
    """AU numbers a prompt defines for ``record``: its dataset's AU vocabulary, or the prompt's 30 AUs if empty."""
    vocab = record.get("au_vocab") or [f"AU{n}" for n in AU_VOCAB["facial_r1"]]
    return [au_number(code) for code in sort_aus(vocab) if au_number(code) in ACTION_UNITS]


@dataclass
class PromptTemplate:
    """A prompt wording. Every text field is plain text; ``{labels}``-style placeholders are listed per field.

    Parts are joined with ``separator`` in this order: question, requirements, labels line, AU definitions,
    example; synthesis adds the ground-truth block, reflection adds the previous response and its problems.
    """

    version: str
    requirements: str
    question: str | None = None  # fixed question; None = the record's own ``question``
    system: str | None = None  # system message text; None = no system message
    # {labels} = the record's label set, {compounds} = the 11 compound names (comma lists); None = omit.
    labels_line: str | None = "Allowed emotions: {labels}."
    include_au_definitions: bool = True
    au_definitions_header: str = "Action units you may cite:"
    au_definition_line: str = (
        "AU{number} ({name}): {appearance}"  # one line per AU of the record's vocabulary
    )
    example: str | None = None  # one complete worked response; None = omit
    example_header: str = "Example response:"
    separator: str = "\n\n"
    synthesis_header: str = "Ground truth for this face; your response must agree with it:"
    synthesis_aus: str = "- The analysis must identify exactly these action units: {aus}."
    synthesis_no_aus: str = "- The face is at rest: describe it as relaxed and cite no action unit numbers."
    synthesis_emotion: str = "- The answer must be exactly: {emotion}."
    synthesis_intensities: str | None = None  # {levels} = "AU1 C, AU12 D"; None = omit
    synthesis_va: str | None = None  # {valence}, {arousal} with 2 decimals; None = omit
    synthesis_compound: str | None = None  # {compound}; None = omit
    reflection_header: str = "Your previous response had problems. Previous response:"
    reflection_problems: str = "Problems:"
    reflection_instruction: str = "Write a corrected response that fixes every problem."

    @property
    def asks_va(self) -> bool:
        """Whether answers end with a ``<va>valence, arousal</va>`` block (an affect prompt's requirement)."""
        return "<va>" in (self.requirements or "")

    @property
    def system_text(self) -> str | None:
        """System message text, or None when this template uses none."""
        return self.system or None

    def user_text(self, record: dict[str, Any]) -> str:
        """The instruction for ``record``: question, requirements, its allowed labels, AU definitions, example."""
        parts = [self.question or record.get("question") or "", self.requirements.strip()]
        if self.labels_line:
            labels = ", ".join(offered_labels(record))
            parts.append(self.labels_line.format(labels=labels, compounds=", ".join(COMPOUND_EMOTIONS)))
        if self.include_au_definitions:
            lines = [
                self.au_definition_line.format(
                    number=n, name=ACTION_UNITS[n].name, appearance=ACTION_UNITS[n].appearance
                )
                for n in defined_aus(record)
            ]
            parts.append("\n".join([self.au_definitions_header, *lines]))
        if self.example:
            parts.append(f"{self.example_header}\n{self.example.strip()}")
        return self.separator.join(p for p in parts if p)

    def ground_truth_block(self, record: dict[str, Any]) -> str:
        """The gold AUs and emotion as instructions; empty when the record carries neither."""
        lines = []
        aus = record.get("AUs")
        if aus is not None:
            lines.append(
                self.synthesis_aus.format(aus=", ".join(sort_aus(aus))) if aus else self.synthesis_no_aus
            )
        if record.get("labels"):
            lines.append(self.synthesis_emotion.format(emotion=record["labels"][0]))
        intensity = record.get("AU_intensity")
        if self.synthesis_intensities and intensity:
            levels = ", ".join(f"{au} {INTENSITY_LETTERS[level - 1]}" for au, level in intensity.items())
            lines.append(self.synthesis_intensities.format(levels=levels))
        if self.synthesis_va and record.get("valence") is not None and record.get("arousal") is not None:
            lines.append(
                self.synthesis_va.format(
                    valence=f"{record['valence']:.2f}", arousal=f"{record['arousal']:.2f}"
                )
            )
        if self.synthesis_compound and record.get("compound"):
            lines.append(self.synthesis_compound.format(compound=record["compound"]))
        return "\n".join([self.synthesis_header, *lines]) if lines else ""

    def synthesis_text(self, record: dict[str, Any]) -> str:
        """``user_text`` plus the ground truth the response must state (what the sample lacks is left out)."""
        block = self.ground_truth_block(record)
        return self.user_text(record) + (self.separator + block if block else "")

    def reflection_text(self, record: dict[str, Any], previous: str, problems: list[str]) -> str:
        """``synthesis_text`` plus the previous response and the problems found in it, asking for a fix."""
        problem_lines = "\n".join(f"- {p}" for p in problems)
        block = "\n".join(
            [
                self.reflection_header,
                previous.strip(),
                self.reflection_problems,
                problem_lines,
                self.reflection_instruction,
            ]
        )
        return self.synthesis_text(record) + self.separator + block

    def sft_text(self, record: dict[str, Any]) -> str:
        """The prompt an SFT row trains on: ``user_text``, or for an instruction row
        (``meta_info["sft_prompt"]``, :mod:`facial_r1.data.teachers.instructions`) its synthesis or reflection text."""
        spec = (record.get("meta_info") or {}).get("sft_prompt")
        if not spec:
            return self.user_text(record)
        if spec.get("kind") == "synthesis":
            return self.synthesis_text(record)
        if spec.get("kind") == "reflection":
            return self.reflection_text(record, spec["previous"], list(spec["problems"]))
        raise ValueError(
            f"record {record.get('id')!r}: unknown meta_info.sft_prompt.kind {spec.get('kind')!r}"
        )


def prompt_conf_dir() -> Path:
    """``conf/prompt`` of this source checkout (the package is used from the repository, see README)."""
    return Path(__file__).resolve().parents[3] / "conf" / "prompt"


def load_prompts(directory: str | Path | None = None) -> dict[str, PromptTemplate]:
    """Every prompt config in ``directory`` (default :func:`prompt_conf_dir`), name -> instantiated template."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    directory = Path(directory) if directory is not None else prompt_conf_dir()
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no prompt configs (*.yaml) in {directory}")
    return {f.stem: instantiate(OmegaConf.load(f)) for f in files}
