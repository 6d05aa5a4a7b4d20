"""The reasoning judge: score parsing, the interval, rubric versions, config, and ``evaluate.py judge=openai`` end to
end against a real OpenAI-compatible server (``transformers serve``) started on localhost.

The served judge is a tiny Qwen2 language model built here with the project tokenizer and hand-set weights: every
layer's output projection is zero, so each next token depends only on the current one, and the embedding and head
make it answer "7" and stop after any prompt. The server, HTTP, the SDK client, its concurrency and cache, and
generation are all real; only the model's weights are chosen so the expected score is known.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from facial_r1 import results
from facial_r1.evaluation.judge import RUBRICS, ReasoningJudge, mean_interval, parse_score

CONF = REPO / "conf"
JUDGE_REPLY = "7"


# ---- units --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reply, expected",
    [
        ("7", 7),
        (" 10 ", 10),
        ("8/10", 8),
        ("The AUs match.\nScore: 6", 6),
        ("**Score:** 9", 9),
        ("score = 4/10", 4),
        ("Scale: Score: 1 is bad, 10 is good.\nScore: 5", 5),  # the last one counts
        ("Score: 11", None),
        ("Score: 0", None),
        ("Score: 6.5", None),
        ("I would say good.", None),
        ("", None),
    ],
)
def test_parse_score(reply: str, expected: int | None) -> None:
    assert parse_score(reply) == expected


def test_mean_interval() -> None:
    assert mean_interval([]) == (None, None)
    assert mean_interval([7, 7, 7]) == (7.0, [7.0, 7.0])
    scores = [2, 4, 6, 8, 10] * 8
    mean, (lo, hi) = mean_interval(scores)
    assert mean == 6.0 and 5.0 < lo < 6.0 < hi < 7.0
    assert mean_interval(scores) == (mean, [lo, hi])  # seeded: reruns agree
    assert mean_interval(scores, confidence=0.5)[1][0] > lo  # narrower at lower coverage


def test_rubric_versions_are_frozen() -> None:
    """A rubric's text never changes under its version (scores would stop being comparable): new wording, new
    version. Update this hash only together with a new entry in RUBRICS."""
    assert (
        RUBRICS["reasoning_v1"].sha256 == "97c62fc39c719003098b63e27fa41fb9c52a6f5a5ee520e02567029f1321245c"
    )
    user = RUBRICS["reasoning_v1"].messages("REF", "OUT")[1]["content"]
    assert "REF" in user and "OUT" in user and "Score: N" in user


def test_judge_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="reasoning_v1"):
        ReasoningJudge("http://127.0.0.1:9", "m", rubric="reasoning_v9")
    with pytest.raises(ValueError, match="judge.reference"):
        ReasoningJudge("http://127.0.0.1:9", "m", reference="gold")


def test_references() -> None:
    judge = ReasoningJudge("http://127.0.0.1:9", "m", api_key_env=None)
    records = [
        {"description": "<think>x</think><answer>fear</answer>", "labels": ["fear"], "AUs": ["AU1"]},
        {"description": "  ", "labels": ["fear"], "AUs": ["AU1"]},
        {"labels": [], "AUs": None},
    ]
    assert judge.references(records) == ["<think>x</think><answer>fear</answer>", None, None]
    judge.reference = "template"
    refs = judge.references(records)
    assert "(AU1)" in refs[0] and "<answer>fear</answer>" in refs[1] and refs[2] is None


def test_score_counts_unparsed_replies_and_skips_samples_without_reference(tmp_path) -> None:
    """Client logic on a scripted local server (tests/test_teachers.py's FakeAPI): what is sent, what is counted."""
    from test_teachers import FakeAPI

    api = FakeAPI()
    api.reply_fn = lambda body: "Good.\nScore: 9" if "REF-A" in body["messages"][1]["content"] else "no idea"
    try:
        judge = ReasoningJudge(api.url, "judge-m", api_key_env=None, cache_dir=tmp_path, max_concurrency=2)
        records = [{"description": "REF-A"}, {"description": "REF-B"}, {"labels": ["fear"]}]
        metrics, scores = judge.score(records, ["out a", "out b", "out c"], progress=False)
        assert scores == [9, None, None] and len(api.requests) == 2  # no reference: not sent
        assert metrics["judge_score"] == 9.0 and metrics["judge_score_ci"] == [9.0, 9.0]
        assert metrics["num_judge_samples"] == 1 and metrics["num_judge_unparsed"] == 1
        assert metrics["judge"]["model"] == "judge-m" and metrics["judge"]["base_url"] == api.url + "/v1"
        body = api.requests[0]["body"]
        assert body["temperature"] == 0.0 and body["max_tokens"] == 256
        assert body["messages"][0]["role"] == "system" and "Score: N" in body["messages"][1]["content"]
        assert judge.score(records, ["out a", "out b", "out c"], progress=False)[1] == scores
        assert len(api.requests) == 2  # the rerun came from the cache
    finally:
        api.server.shutdown()
        api.server.server_close()


def test_evaluate_config_has_no_judge_unless_asked(monkeypatch) -> None:
    monkeypatch.setenv("FACIAL_R1_CACHE", "/tmp/facial_r1_test_cache")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        assert compose("evaluate").get("judge") is None
        cfg = compose("evaluate", overrides=["judge=openai", "judge.model=m", "judge.base_url=http://h:1"])
    judge = instantiate(cfg.judge)
    assert isinstance(judge, ReasoningJudge)
    assert judge.provenance() | {"rubric_sha256": None} == {
        "model": "m",
        "rubric": "reasoning_v1",
        "rubric_sha256": None,
        "base_url": "http://h:1/v1",
        "temperature": 0.0,
        "reference": "description",
    }
    assert (
        str(judge.api.cache_dir) == "/tmp/facial_r1_test_cache/judge_openai"
        and judge.api.max_concurrency == 8
    )


# ---- end to end against a real OpenAI-compatible server -----------------------------------------------------------
SERVE_MISSING = [m for m in ("fastapi", "uvicorn", "openai") if importlib.util.find_spec(m) is None]


def build_judge_model(tokenizer_dir: Path, out: Path, reply: str = JUDGE_REPLY) -> Path:
    """A tiny Qwen2 LM that answers ``reply`` (one token) and then <|im_end|> to any prompt (module docstring)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    (answer,) = tok.encode(reply, add_special_tokens=False)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=False,
        bos_token_id=tok.pad_token_id, eos_token_id=eos, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.fill_(
                1.0 if name.endswith("norm.weight") else 0.0
            )  # zero attention/MLP outputs: a bigram model
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        embed[:, 0] = 1.0  # every token but the answer -> direction 0 -> the answer
        embed[answer] = 0.0
        embed[answer, 1] = 1.0  # the answer -> direction 1 -> end of turn
        head[answer, 0] = 10.0
        head[eos, 1] = 10.0
    model.generation_config.eos_token_id = eos
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def judge_server(tmp_path_factory, tiny_model_dir: Path, subprocess_env):
    """``transformers serve <judge model>`` on 127.0.0.1; yields (base_url, model name); stopped afterwards."""
    if SERVE_MISSING:
        pytest.skip(f"transformers serve needs {', '.join(SERVE_MISSING)} (requirements.txt)")
    folder = build_judge_model(tiny_model_dir, tmp_path_factory.mktemp("judge") / "judge-7")
    port = _free_port()
    log = (folder.parent / "serve.log").open("w")
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder), "--host", "127.0.0.1",
           "--port", str(port), "--device", "cpu"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(folder.parent))
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise AssertionError(
                    "transformers serve did not start:\n" + (folder.parent / "serve.log").read_text()
                )
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", str(folder)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_evaluate_with_judge_against_a_real_server(tmp_path, tiny_model_dir, subprocess_env, judge_server):
    base_url, served = judge_server
    out = tmp_path / "out"
    args = [
        f"model.path={tiny_model_dir}",
        "dataset.n_test=4",
        "dataset.progress=false",
        "limit=4",
        "max_new_tokens=8",
        "logger=none",
        "judge=openai",
        f"judge.base_url={base_url}",
        f"judge.model={served}",
        "judge.api_key_env=null",
        "judge.reference=template",  # SynthFACS has no reference reasoning: written from the gold labels
        "judge.max_concurrency=2",
        "judge.max_tokens=8",
        f"judge.cache_dir={tmp_path / 'judge_cache'}",
    ]
    proc = subprocess.run(
        [sys.executable, "evaluate.py", *args],
        cwd=REPO,
        env=subprocess_env(out),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((out / "evaluate").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["judge_score"] == 7.0 and metrics["judge_score_ci"] == [7.0, 7.0]
    assert metrics["num_judge_samples"] == 4 and metrics["num_judge_unparsed"] == 0
    assert metrics["judge"]["model"] == served and metrics["judge"]["rubric"] == "reasoning_v1"
    assert metrics["judge"]["base_url"] == base_url + "/v1"
    assert metrics["judge"]["rubric_sha256"] == RUBRICS["reasoning_v1"].sha256
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert [row["judge_score"] for row in rows] == [7, 7, 7, 7]
    assert json.loads(proc.stdout[proc.stdout.index("{") :])["judge_score"] == 7.0
    assert (
        1 <= len(list((tmp_path / "judge_cache").glob("*.json"))) <= 4
    )  # replies cached (equal requests share one)
    (row,) = results.collect([run])
    assert row["judge_score"] == 7.0 and row["judge"] == f"{served} | reasoning_v1 | {base_url}/v1"
