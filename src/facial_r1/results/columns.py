"""The results tables' columns: which metrics, their Markdown titles, what makes two runs one group, and the
row order."""

from __future__ import annotations

# Beyond the paper (evaluation.affect_metrics.AFFECT_HEADLINE_KEYS): AU intensity, valence/arousal, compound, and the
# format rate of the affect layout (an affect prompt's answers end with <va>, which the plain format rate counts as
# wrong). None for runs whose data or prompt carries no such target; results.md shows a column only where some run
# has a value.
AFFECT_METRICS = (
    "au_intensity_icc",
    "au_intensity_mae",
    "valence_ccc",
    "arousal_ccc",
    "valence_rmse",
    "arousal_rmse",
    "compound_acc",
    "compound_uar",
    "format_va_rate",
)
# The headline metrics of evaluation.metrics.HEADLINE_KEYS but ROUGE-L, plus the LLM judge's score, the affect
# metrics and time. Spelled out rather than imported: importing the evaluation package loads torch (5 s) for this
# stdlib-only collector; a test keeps them in step.
METRICS = (
    "emotion_acc",
    "emotion_uar",
    "au_f1_macro",
    "au_f1_micro",
    "format_rate",
    "consistency_rate",
    "au_hallucination_rate",
    "judge_score",
    *AFFECT_METRICS,
    "wall_time_s",
)
HEADERS = {  # Markdown column titles
    "emotion_acc": "emotion acc",
    "emotion_uar": "UAR",
    "au_f1_macro": "AU F1 macro",
    "au_f1_micro": "AU F1 micro",
    "format_rate": "format",
    "consistency_rate": "consistency",
    "au_hallucination_rate": "AU halluc.",
    "judge_score": "judge score",
    "au_intensity_icc": "AU int. ICC",
    "au_intensity_mae": "AU int. MAE",
    "valence_ccc": "V CCC",
    "arousal_ccc": "A CCC",
    "valence_rmse": "V RMSE",
    "arousal_rmse": "A RMSE",
    "compound_acc": "compound acc",
    "compound_uar": "compound UAR",
    "format_va_rate": "format (V/A)",
    "wall_time_s": "wall s",
}
IDENTITY = (
    "experiment",
    "stage",
    "reward",
    "protocol",
    "split",
    "n_eval",
    "variant",
    "start",
)  # a group: equal, any seed (``start`` only where a seed repeats: group_rows)
CI_COLUMNS = tuple(f"{m}_ci_{end}" for m in METRICS if m != "wall_time_s" for end in ("low", "high"))
RUN_COLUMNS = (
    "run",
    *IDENTITY[:3],
    "seed",
    *IDENTITY[3:],
    *METRICS,
    *CI_COLUMNS,
    "judge",
    "global_step",
    "load_1m_start",
    "load_1m_end",
    "path",
)
# The paper's ablation order; other experiments follow alphabetically.
ORDER = ("zero_shot", "sft_300", "sft_all", "sft_all_noisy", "sft_300_llm_like", "sft_all_llm_like", "sft300_grpo",
         "pipeline_round2_sft", "sft300_grpo_synth", *(f"{kind}_round{r}" for r in range(1, 10) for kind in ("sft_synth", "grpo_synth")),
         "reward_ablation")  # fmt: skip
STAGE_ORDER = ("zero-shot", "eval", "sft", "grpo")
# Overrides that say nothing about the method: where things were written and which exact folder a stage started from.
_BOOKKEEPING = ("paths.", "hydra.", "model.init_from", "dataset.runs", "dataset.files", "ckpt_path", "run_name",
                "logger", "trainer.enable_progress_bar", "dataset.progress", "progress")  # fmt: skip
_NAMED = ("experiment", "+experiment", "stage", "reward", "seed", "protocol")
