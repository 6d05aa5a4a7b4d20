"""Template teacher (+ noise), SFT record selection, tokenizer corpus, the description check, the API teacher."""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from facial_r1.data.prompts import load_prompts
from facial_r1.data.schema import make_record
from facial_r1.data.teachers import (
    InvalidDescription,
    LLMLikeNoise,
    OpenAITeacher,
    TeacherError,
    TeacherNoise,
    TemplateTeacher,
    build_sft_records,
    check_description,
    tokenizer_corpus,
)
from facial_r1.data.teachers.template import best_matching_emotion
from facial_r1.facs import ACTION_UNITS, AU_VOCAB, EMOTION_PROTOTYPES, EMOTIONS, LABEL_ORDERS, au_codes

CONF = Path(__file__).resolve().parents[1] / "conf"
STRICT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
NEGATION = re.compile(
    r"\b(no|not|without|never|maybe|perhaps|possibly|uncertain|unclear|absent|lack)\b", re.I
)
SECRET = "sk-test-SECRET-0123456789"


def record(id="s1", aus=("AU1", "AU4", "AU15"), labels=("sadness",), label_set=LABEL_ORDERS["rafdb"], **kw):
    aus = None if aus is None else list(aus)
    return make_record(id=id, dataset="d", image=kw.pop("image", "x.png"), aus=aus, labels=list(labels),
                       label_set=label_set, **kw)  # fmt: skip


def cited(text: str) -> list[str]:
    return re.findall(r"\(AU(\d+)\)", text)


# ---- template teacher -------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(sorted(ACTION_UNITS)), max_size=7, unique=True),
    st.sampled_from(EMOTIONS),
    st.text(max_size=8),
    st.integers(0, 3),
)
def test_clean_description_states_exactly_the_gold_labels(numbers, emotion, rid, seed):
    rec = record(id=rid, aus=au_codes(numbers), labels=[emotion], label_set=EMOTIONS)
    text = TemplateTeacher(seed=seed).describe(rec)
    assert STRICT.fullmatch(text) and text == text.strip()
    assert check_description(text, rec) == []
    assert text.endswith(f"<answer>{emotion}</answer>") and emotion in text.split("</think>")[0]
    assert sorted(map(int, cited(text))) == sorted(numbers)
    assert not NEGATION.search(text)
    assert len(text.split()) <= 12 * max(len(numbers), 1) + 14  # ~one short clause per AU plus one sentence


def test_every_au_phrase_passes_the_check():
    # Both wordings of every AU (two seeds out of eight pick each variant with near certainty).
    phrases = set()
    for n in ACTION_UNITS:
        rec = record(id=f"au{n}", aus=[f"AU{n}"], labels=["surprise"])
        for seed in range(8):
            text = TemplateTeacher(seed=seed).describe(rec)
            assert check_description(text, rec) == [] and not NEGATION.search(text)
            phrases.add(text.split(f" (AU{n})")[0].split()[-1])
    assert len(phrases) > len(ACTION_UNITS)


def test_aus_in_face_order_and_relaxed_neutral():
    text = TemplateTeacher().describe(record(aus=["AU26", "AU17", "AU2", "AU6", "AU9"], labels=["surprise"]))
    assert cited(text) == ["2", "6", "9", "26", "17"]  # brows, eyes, nose, mouth, chin
    neutral = TemplateTeacher(phrasing="fixed").describe(record(aus=[], labels=["neutral"]))
    assert neutral == (
        "<think>The face is relaxed and the features rest in their default positions. "
        "These cues indicate a neutral expression.</think><answer>neutral</answer>"
    )


def test_phrasing_is_deterministic_per_record_and_varies_across_records():
    recs = [record(id=f"r{i}") for i in range(40)]
    first = [TemplateTeacher(seed=0).describe(r) for r in recs]
    assert first == TemplateTeacher(seed=0).describe_many(recs, progress=False)
    assert len(set(first)) >= 5
    assert first != [TemplateTeacher(seed=1).describe(r) for r in recs]
    assert len({TemplateTeacher(phrasing="fixed").describe(r) for r in recs}) == 1
    with pytest.raises(ValueError):
        TemplateTeacher(phrasing="wild")


def test_missing_annotations_are_filled_as_documented():
    text, info = TemplateTeacher().describe_with_info(record(aus=None, labels=["fear"]))
    assert sorted(map(int, cited(text))) == [1, 2, 4, 5, 20, 25] and info["au_source"] == "prototype"
    text, info = TemplateTeacher().describe_with_info(record(aus=["AU6", "AU12"], labels=[], label_set=[]))
    assert text.endswith("<answer>happiness</answer>") and info["emotion_source"] == "prototype_match"
    assert best_matching_emotion([], list(LABEL_ORDERS["rafdb"])) == "neutral"
    assert best_matching_emotion(["AU12", "AU14"], list(EMOTIONS)) == "contempt"
    # RAF-AU has no contempt: the closest offered label wins.
    assert best_matching_emotion(["AU12", "AU14"], list(LABEL_ORDERS["raf_au"])) == "happiness"
    with pytest.raises(ValueError, match="neither"):
        TemplateTeacher().describe(record(aus=None, labels=[]))


def test_noise_off_equals_clean_and_extremes_do_what_they_say():
    rec = record(aus=["AU1", "AU2", "AU5", "AU26"], labels=["surprise"], au_vocab=AU_VOCAB["disfa"])
    assert TemplateTeacher(noise={}).describe(rec) == TemplateTeacher().describe(rec)
    text, info = TemplateTeacher(noise=TeacherNoise(omit_au_rate=1.0)).describe_with_info(rec)
    assert cited(text) == [] and info["omitted"] == rec["AUs"]
    text, info = TemplateTeacher(noise={"hallucinate_au_rate": 1.0}).describe_with_info(rec)
    (extra,) = info["hallucinated"]
    assert extra not in rec["AUs"] and int(extra[2:]) in AU_VOCAB["disfa"] and extra[2:] in cited(text)
    text, info = TemplateTeacher(noise={"wrong_emotion_rate": 1.0}).describe_with_info(rec)
    assert info["wrong_emotion"] in LABEL_ORDERS["rafdb"] and info["wrong_emotion"] != "surprise"
    assert text.endswith(f"<answer>{info['wrong_emotion']}</answer>")
    assert any("must be exactly" in p for p in check_description(text, rec))
    with pytest.raises(ValueError):
        TeacherNoise(omit_au_rate=1.5)


def test_noise_rates_and_determinism():
    noise = TeacherNoise(omit_au_rate=0.3, hallucinate_au_rate=0.3, wrong_emotion_rate=0.2)
    teacher = TemplateTeacher(seed=3, noise=noise)
    recs = [record(id=f"n{i}", aus=["AU1", "AU4", "AU15"]) for i in range(1000)]
    infos = [teacher.describe_with_info(r)[1] for r in recs]
    assert [teacher.describe_with_info(r)[1] for r in recs[:50]] == infos[:50]
    omitted = sum(len(i["omitted"]) for i in infos) / 3000
    hallucinated = sum(bool(i["hallucinated"]) for i in infos) / 1000
    wrong = sum(i["wrong_emotion"] is not None for i in infos) / 1000
    assert abs(omitted - 0.3) < 0.04 and abs(hallucinated - 0.3) < 0.05 and abs(wrong - 0.2) < 0.05


@pytest.mark.parametrize("name", ["template", "template_noisy", "llm_like"])
def test_teacher_configs_instantiate(name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        teacher = instantiate(compose(overrides=[f"+teacher={name}"]).teacher)
    assert isinstance(teacher, TemplateTeacher)
    assert teacher.noise.active is (name != "template")
    assert STRICT.fullmatch(teacher.describe(record()))


# ---- the LLM-like teacher -----------------------------------------------------------------------------------------
SYNTH_LABELS = ("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")


def test_llm_like_confusions_reproduce_their_configured_rates():
    noise = LLMLikeNoise()
    teacher = TemplateTeacher(noise=noise)
    for gold, row in noise.confusions.items():
        aus = [f"AU{n}" for n in EMOTION_PROTOTYPES[gold]]
        recs = [record(id=f"{gold}{i}", aus=aus, labels=[gold], label_set=SYNTH_LABELS) for i in range(400)]
        believed = collections.Counter(teacher.describe_with_info(r)[1]["emotion"] for r in recs)
        for other, p in row.items():  # binomial sd at n = 400 is <= 0.025: 0.08 is > 3 sd
            assert abs(believed[other] / 400 - p) < 0.08, (gold, other, believed)
        assert abs(believed[gold] / 400 - (1 - sum(row.values()))) < 0.08, (gold, believed)


def test_llm_like_mistakes_are_systematic():
    noise = LLMLikeNoise(omit_au_rate=0.0, omit_subtle_rate=0.0, invent_au_rate=0.0, au_confusions={})
    teacher = TemplateTeacher(noise=noise)
    # AU12 whenever it says happiness, even on a face without it; a believed label the dataset lacks is not used
    rec = record(id="h", aus=["AU6"], labels=["happiness"], label_set=SYNTH_LABELS)
    for i in range(30):
        aus, emotion, _ = noise.apply(["AU6"], "happiness", {**rec, "id": f"h{i}"}, random.Random(i))
        assert emotion != "happiness" or "AU12" in aus
    no_neutral = record(id="c", aus=["AU12", "AU14"], labels=["contempt"], label_set=SYNTH_LABELS[:5])
    assert {noise.believed_emotion("contempt", no_neutral, random.Random(i)) for i in range(50)} == {
        "contempt"
    }
    with_neutral = {**no_neutral, "label_set": list(SYNTH_LABELS)}
    assert {noise.believed_emotion("contempt", with_neutral, random.Random(i)) for i in range(50)} == {
        "contempt",
        "neutral",
    }
    # subtle AUs are the ones omitted
    subtle = LLMLikeNoise(
        omit_subtle_rate=1.0, omit_au_rate=0.0, invent_au_rate=0.0, au_confusions={}, confusions={}
    )
    levels = {"AU1": 2, "AU4": 5, "AU15": 3}
    aus, _, info = subtle.apply(
        ["AU1", "AU4", "AU15"], "sadness", record(au_intensity=levels), random.Random(0)
    )
    assert info["omitted"] == ["AU1", "AU15"] and "AU4" in aus
    # the same record always gets the same mistakes
    assert teacher.describe(rec) == TemplateTeacher(noise=noise).describe(rec)


def test_llm_like_defaults_score_like_a_zero_shot_llm_on_synthfaces():
    from facial_r1.data.synthfaces import iter_samples
    from facial_r1.parsing import parse

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        teacher = instantiate(compose(overrides=["+teacher=llm_like"]).teacher)
    assert isinstance(teacher.noise, LLMLikeNoise) and dict(teacher.noise.confusions) == dict(
        LLMLikeNoise().confusions
    )
    tp = fp = fn = 0
    correct = []
    for _, rec in iter_samples(600, split="train"):
        parsed = parse(teacher.describe(rec), label_set=rec["label_set"])
        gold, cited = set(rec["AUs"] or []), set(parsed.aus)
        tp, fp, fn = tp + len(gold & cited), fp + len(cited - gold), fn + len(gold - cited)
        if rec["labels"]:
            correct.append(parsed.emotion == rec["labels"][0])
    accuracy, f1 = sum(correct) / len(correct), 2 * tp / (2 * tp + fp + fn)
    assert 0.55 <= accuracy <= 0.68 and 0.50 <= f1 <= 0.62, (accuracy, f1)  # GPT-4o: 62.7 % / 47-60 F1


# ---- SFT selection and tokenizer corpus ---------------------------------------------------------------------------
def test_build_sft_records_selects_fully_labelled_samples_deterministically():
    recs = [record(id=f"a{i}") for i in range(20)] + [
        record(id="noau", aus=None),
        record(id="nolab", labels=[]),
    ]
    recs.append(record(id="relaxed", aus=[], labels=["neutral"]))
    chosen = build_sft_records(recs, n=8, seed=1)
    assert len(chosen) == 8 and chosen == build_sft_records(recs, n=8, seed=1)
    assert chosen != build_sft_records(recs, n=8, seed=2)
    assert all(c["id"] not in ("noau", "nolab") and STRICT.fullmatch(c["description"]) for c in chosen)
    assert all(r["description"] is None for r in recs)  # inputs untouched
    assert {c["id"] for c in build_sft_records(recs, n="all")} == {f"a{i}" for i in range(20)} | {"relaxed"}
    with pytest.raises(ValueError, match="only 21"):
        build_sft_records(recs, n=22)

    class Picky:
        def describe(self, rec):
            return None if rec["id"] == "a0" else "<think>x (AU1)</think><answer>sadness</answer>"

    assert [c["id"] for c in build_sft_records(recs[:3], n="all", teacher=Picky())] == ["a1", "a2"]


def test_tokenizer_corpus_covers_the_vocabulary():
    corpus = tokenizer_corpus(n=300, seed=0)
    assert corpus == tokenizer_corpus(n=300, seed=0)
    text = "\n".join(corpus)
    assert all(f"(AU{n})" in text for n in ACTION_UNITS)
    assert all(f"<answer>{e}</answer>" in text for e in EMOTIONS)
    prompts = load_prompts()
    rec = record(label_set=list(EMOTIONS))
    assert prompts["compact_v1"].user_text(rec) in corpus
    assert any("Problems:" in t for t in corpus)


# ---- the description check ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>Brows up (AU1), knit (AU4), corners down (AU15).</think><answer>sadness</answer>", []),
        (
            " <think>Brows up (AU1), knit (AU4), corners down (AU15).</think><answer>sadness</answer>",
            ["format"],
        ),
        ("Brows up (AU1) (AU4) (AU15). <answer>sadness</answer>", ["format", "does not cite"]),
        ("<think>Brows up (AU1) and knit (AU4).</think><answer>sadness</answer>", ["does not cite"]),
        ("<think>AU1 AU4 AU15 AU9</think><answer>sadness</answer>", ["does not show"]),
        ("<think>AU1 AU4 AU15</think><answer>Sadness</answer>", ["must be exactly"]),
    ],
)
def test_check_description(text, expected):
    problems = check_description(text, record())
    assert len(problems) == len(expected)
    assert all(word in problem for word, problem in zip(expected, problems, strict=True))


def test_the_affect_prompt_asks_for_the_va_layout_and_the_check_follows_it():
    prompts = load_prompts()
    assert prompts["compact_affect_v1"].asks_va and not prompts["compact_v1"].asks_va
    affect = (
        "<think>Brows up (AU1, C), knit (AU4, B), corners down (AU15, D).</think><answer>sadness</answer>"
        "<va>-0.6, -0.3</va>"
    )
    assert check_description(affect, record(), va=True) == []
    assert [p[:13] for p in check_description(affect, record())] == ["Wrong format:"]  # plain strict: refused
    plain = "<think>Brows up (AU1), knit (AU4), corners down (AU15).</think><answer>sadness</answer>"
    assert "<va>valence, arousal</va>" in check_description(plain, record(), va=True)[0]


def test_full_prompt_example_passes_the_check():
    example = load_prompts()["full_v1"].example
    assert check_description(example, record()) == [] and not NEGATION.search(example)


# ---- OpenAI-compatible teacher (openai SDK) against a scripted local server ---------------------------------------
# Error paths (429, 5xx, 401 echoing the key) cannot be provoked from a real server on demand, so this layer scripts
# them; tests/test_judge.py runs the same client against a real OpenAI-compatible server.
class FakeAPI:
    """A chat-completions server on 127.0.0.1 that replays scripted (status, content) replies, or answers with
    ``reply_fn(body)``; it counts the requests in flight at once (``peak``)."""

    def __init__(self, delay: float = 0.0):
        self.requests: list[dict] = []
        self.script: list[tuple[int, str]] = []
        self.default = (200, "")
        self.reply_fn = None
        self.delay, self.in_flight, self.peak = delay, 0, 0
        lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    api.requests.append(
                        {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                    )
                    api.in_flight += 1
                    api.peak = max(api.peak, api.in_flight)
                    status, content = api.script.pop(0) if api.script else api.default
                time.sleep(api.delay)
                if api.reply_fn is not None:
                    status, content = 200, api.reply_fn(body)
                reply = {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": content},
                        }
                    ],
                }
                data = json.dumps(reply if status == 200 else {"error": {"message": content}}).encode()
                with lock:
                    api.in_flight -= 1
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status != 200:
                    self.send_header("retry-after-ms", "10")  # the SDK honours it: fast retries in tests
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()


@pytest.fixture
def api():
    server = FakeAPI()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def face(tmp_path) -> dict:
    path = tmp_path / "face.png"
    Image.new("RGB", (8, 8), (200, 150, 120)).save(path)
    return record(image=str(path))


@pytest.fixture
def key(monkeypatch) -> str:
    monkeypatch.setenv("TEST_TEACHER_KEY", SECRET)
    return SECRET


GOOD = "<think>The inner brows rise (AU1), the brows knit (AU4) and the corners drop (AU15). Sadness.</think><answer>sadness</answer>"


def make_teacher(api, tmp_path, **kw) -> OpenAITeacher:
    kw = {
        "prompt": load_prompts()["full_v1"],
        "cache_dir": tmp_path / "cache",
        "api_key_env": "TEST_TEACHER_KEY",
    } | kw
    return OpenAITeacher(api.url + "/v1", "test-model", **kw)


def test_success_sends_image_and_ground_truth_prompt(api, face, tmp_path, key):
    api.default = (200, "\n" + GOOD)
    teacher = make_teacher(api, tmp_path)
    assert teacher.describe(face) == GOOD
    (req,) = api.requests
    assert req["path"] == "/v1/chat/completions" and req["auth"] == f"Bearer {SECRET}"
    assert req["body"]["model"] == "test-model" and req["body"]["temperature"] == 0.0
    image, text = req["body"]["messages"][-1]["content"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    assert text["text"] == teacher.prompt.synthesis_text(face) and "AU1, AU4, AU15" in text["text"]


def test_retries_429_and_5xx(api, face, tmp_path, key):
    api.script = [(429, "slow down"), (503, "busy")]
    api.default = (200, GOOD)
    assert make_teacher(api, tmp_path).describe(face) == GOOD
    assert len(api.requests) == 3


def test_gives_up_after_max_retries_and_never_retries_client_errors(api, face, tmp_path, key):
    api.default = (500, "boom")
    with pytest.raises(TeacherError, match="HTTP 500") as err:
        make_teacher(api, tmp_path, max_retries=2).describe(face)
    assert len(api.requests) == 3 and err.value.status_code == 500
    api.default = (400, "bad request")
    with pytest.raises(TeacherError, match="HTTP 400"):
        make_teacher(api, tmp_path).describe(face)
    assert len(api.requests) == 4


def test_connection_error_and_timeout_are_typed(face, tmp_path, key):
    teacher = OpenAITeacher("http://127.0.0.1:9", "m", "TEST_TEACHER_KEY", max_retries=0, cache_dir=None)
    with pytest.raises(TeacherError, match="127.0.0.1:9") as err:
        teacher.describe(face)
    assert err.value.status_code is None
    slow = FakeAPI(delay=1.0)
    try:
        with pytest.raises(TeacherError, match="timed out after 0.2 s"):
            make_teacher(slow, tmp_path, timeout=0.2, max_retries=0).describe(face)
    finally:
        slow.server.shutdown()
        slow.server.server_close()


def test_cache_makes_reruns_free(api, face, tmp_path, key):
    api.default = (200, GOOD)
    assert make_teacher(api, tmp_path).describe(face) == GOOD
    text, info = make_teacher(api, tmp_path).describe_with_info(face)
    assert text == GOOD and info["cached"] == 1 and len(api.requests) == 1
    other = OpenAITeacher(
        api.url, "other-model", "TEST_TEACHER_KEY", load_prompts()["full_v1"], tmp_path / "cache"
    )
    other.describe(face)
    assert len(api.requests) == 2  # the model is part of the cache key


def test_cache_entries_of_the_old_client_still_answer(api, face, tmp_path, key):
    """Caches written before the switch to the SDK keep their key: sha256 of (model, temperature, max_tokens,
    system text, prompt text, image hash)."""
    teacher = make_teacher(api, tmp_path)
    image_hash = hashlib.sha256(Path(face["image"]).read_bytes()).hexdigest()
    material = [
        "test-model", 0.0, 512, teacher.prompt.system_text, teacher.prompt.synthesis_text(face), image_hash
    ]  # fmt: skip
    entry = tmp_path / "cache" / f"{hashlib.sha256(json.dumps(material).encode()).hexdigest()}.json"
    entry.parent.mkdir(parents=True)
    entry.write_text(json.dumps({"model": "test-model", "prompt": "...", "content": GOOD}))
    assert teacher.describe(face) == GOOD and api.requests == []


def test_describe_many_is_concurrent_bounded_ordered_and_cached(tmp_path, key):
    """8 records with a 0.3 s server: at most max_concurrency=3 in flight, at least 2 at once, results in input
    order, a rerun answered from the cache."""
    slow = FakeAPI(delay=0.3)
    slow.reply_fn = lambda body: "reply to " + body["messages"][-1]["content"][1]["text"].split("|")[-1]
    prompt = load_prompts()["full_v1"]
    recs = []
    for i in range(8):
        path = tmp_path / f"face{i}.png"
        Image.new("RGB", (8, 8), (10 * i, 150, 120)).save(path)
        recs.append(record(id=f"s{i}", image=str(path)))
    try:
        teacher = make_teacher(slow, tmp_path, validate=False, max_concurrency=3)
        teacher.prompt = _TaggedPrompt(prompt)
        assert teacher.describe_many(recs, progress=False) == [f"reply to s{i}" for i in range(8)]
        assert 2 <= slow.peak <= 3 and len(slow.requests) == 8
        assert teacher.describe_many(recs, progress=False)[3] == "reply to s3" and len(slow.requests) == 8
    finally:
        slow.server.shutdown()
        slow.server.server_close()


class _TaggedPrompt:
    """A prompt whose synthesis text ends with ``|<record id>``, so the server can answer per record."""

    def __init__(self, prompt):
        self.prompt, self.system_text, self.version = prompt, prompt.system_text, prompt.version

    def synthesis_text(self, record):
        return self.prompt.synthesis_text(record) + "|" + record["id"]


def test_backoff_key_names_its_replacement():
    with pytest.raises(ValueError, match="teacher.max_retries"):
        OpenAITeacher("http://127.0.0.1:9", "m", backoff=1.0)


@pytest.mark.parametrize("on_invalid", ["skip", "raise", "keep"])
def test_invalid_output_handling(api, face, tmp_path, key, on_invalid):
    bad = "<think>The brows knit (AU4).</think><answer>anger</answer>"
    api.default = (200, bad)
    teacher = make_teacher(api, tmp_path, on_invalid=on_invalid)
    if on_invalid == "raise":
        with pytest.raises(InvalidDescription) as err:
            teacher.describe(face)
        assert any("AU1, AU15" in p for p in err.value.problems)
    else:
        assert teacher.describe(face) == (None if on_invalid == "skip" else bad)
    assert make_teacher(api, tmp_path, validate=False).describe(face) == bad


def test_reflection_retry_sends_previous_response_and_problems(api, face, tmp_path, key):
    bad = "<think>The brows knit (AU4).</think><answer>anger</answer>"
    api.script = [(200, bad)]
    api.default = (200, GOOD)
    text, info = make_teacher(api, tmp_path, reflections=2).describe_with_info(face)
    assert text == GOOD and info["attempts"] == 2 and info["problems"] == []
    second = api.requests[1]["body"]["messages"][-1]["content"][1]["text"]
    assert bad in second and "does not cite these action units: AU1, AU15" in second


def test_api_key_never_leaks(api, face, tmp_path, key, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    api.script = [(429, f"echo {SECRET}")]
    api.default = (200, "<think>(AU4)</think><answer>anger</answer>")
    teacher = make_teacher(api, tmp_path)
    assert teacher.describe(face) is None  # rejected, logged
    api.default = (401, f"invalid key {SECRET}")
    with pytest.raises(TeacherError) as err:
        make_teacher(api, tmp_path / "other").describe(face)
    leaks = [caplog.text, repr(teacher), str(teacher.__dict__), str(teacher.api.__dict__)]
    leaks += [str(err.value), repr(err.value), repr(err.value.__cause__), repr(err.value.__context__)]
    leaks += [p.read_text() for p in (tmp_path / "cache").rglob("*")]
    assert caplog.records and all(SECRET not in s for s in leaks)
    monkeypatch.delenv("TEST_TEACHER_KEY")
    with pytest.raises(TeacherError, match="TEST_TEACHER_KEY"):
        make_teacher(api, tmp_path / "third").describe(face)


def test_no_key_env_never_sends_openai_api_key(api, face, tmp_path, monkeypatch):
    """api_key_env=null (a local server) must not fall back to $OPENAI_API_KEY, which the SDK would read."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    api.default = (200, GOOD)
    make_teacher(api, tmp_path, api_key_env=None).describe(face)
    assert SECRET not in api.requests[0]["auth"]


def test_openai_config_instantiates(monkeypatch):
    monkeypatch.setenv("FACIAL_R1_CACHE", "/tmp/facial_r1_test_cache")
    overrides = [
        "+prompt=compact_v1",
        "+paths=default",
        "+teacher=openai",
        "teacher.base_url=http://127.0.0.1:9",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        teacher = instantiate(compose(overrides=overrides).teacher)
    assert isinstance(teacher, OpenAITeacher) and teacher.prompt.version == "compact_v1"
    assert teacher.url == "http://127.0.0.1:9/v1/chat/completions" and teacher.reflections == 2
    assert teacher.api.max_concurrency == 8
    assert str(teacher.cache_dir) == "/tmp/facial_r1_test_cache/teacher_openai"
