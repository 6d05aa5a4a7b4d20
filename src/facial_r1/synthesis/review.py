"""Human review of a synthesis run: a static HTML page, a review file, and the command that applies it.

    python -m facial_r1.synthesis.review html  --run <run dir> [--out review.html] [--max-rows N] [--images link]
    python -m facial_r1.synthesis.review apply --run <run dir> --review review.jsonl --out final.jsonl

``review.html`` opens in any browser without a server: one card per sample with the face (a base64 JPEG thumbnail,
or a relative link with ``--images link``), gold AUs and label, the response's reasoning, the emotion it concludes
and its answer, the four check results (AU, emotion, format, consistency; a check that did not gate is marked "not
enforced"), the problems, the attempt count and the automatic decision. The header counts rejections per check
(from ``manifest.json``). Its buttons build the review file in the browser (a Blob download); it can also be
written by hand.

Review file: JSON lines ``{"id": ..., "decision": "accept" | "reject", "note": ..., "dataset": ...}`` (``dataset``
only needed when an id occurs in two datasets), or a CSV with the columns ``id,decision,note[,dataset]``. Applying
it writes the final dataset: accepted samples minus those the reviewer rejected, plus rejected samples the reviewer
accepted (their last response becomes the ``description``); samples not in the file keep the automatic decision.
Each reviewed row carries ``meta_info["synthesis"]["review"] = {"decision", "note"}``. The output is a file
``dataset=synth dataset.files=[...]`` reads.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from facial_r1.data.schema import DataError
from facial_r1.files import write_json_atomic, write_text_atomic
from facial_r1.synthesis.store import (
    ACCEPTED,
    REJECTED,
    read_jsonl,
    read_manifest,
    sample_key,
)

DECISIONS = ("accept", "reject")
REVIEW_HTML = "review.html"


def run_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every finished sample of a run (accepted first), each with its response under ``_output``."""
    rows = []
    for name, accepted in ((ACCEPTED, True), (REJECTED, False)):
        for row in read_jsonl(Path(run_dir) / name):
            info = (row.get("meta_info") or {}).get("synthesis") or {}
            output = row.get("description") if accepted else info.get("output")
            rows.append({**row, "_accepted": accepted, "_output": output or ""})
    return rows


# ---- HTML ---------------------------------------------------------------------------------------------------------


def write_review_html(
    run_dir: str | Path,
    out: str | Path | None = None,
    max_rows: int | None = None,
    thumbnail: int = 160,
    images: str = "embed",
    seed: int = 0,
) -> Path:
    """Write the review page of ``run_dir`` (default ``<run_dir>/review.html``); returns its path.

    ``max_rows`` caps the page (a seeded random subset, kept in file order, when the run is larger); ``images`` is
    ``embed`` (base64 thumbnails: the page travels alone) or ``link`` (relative paths: small page, same machine).
    """
    if images not in ("embed", "link"):
        raise ValueError(f"images must be 'embed' or 'link', got {images!r}")
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / REVIEW_HTML
    rows = run_rows(run_dir)
    total = len(rows)
    if max_rows is not None and total > int(max_rows):
        keep = set(random.Random(seed).sample(range(total), int(max_rows)))
        rows = [row for i, row in enumerate(rows) if i in keep]
    manifest = read_manifest(run_dir)
    cards = "\n".join(_card(row, out.parent, thumbnail, images) for row in rows)
    shown = f"{len(rows)} of {total}" if len(rows) < total else str(total)
    summary = (
        f"round {manifest.get('round', '?')} &middot; model {html.escape(str((manifest.get('source_model') or {}).get('folder', '?')))}"
        f" &middot; {shown} samples shown &middot; acceptance rate "
        f"{_pct(manifest.get('acceptance_rate'))}{_check_counts(manifest.get('counts') or {})}"
    )
    page = _PAGE.format(title=html.escape(f"Synthesis review: {run_dir.name}"), summary=summary, cards=cards)
    return write_text_atomic(out, page)


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f}%" if isinstance(value, (int, float)) else "?"


def _image_src(path: str, folder: Path, thumbnail: int, images: str) -> str | None:
    if images == "link":
        return Path(os.path.relpath(path, folder)).as_posix()
    try:
        from PIL import Image

        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((thumbnail, thumbnail))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
    except (OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _check_counts(counts: dict[str, Any]) -> str:
    """The header's per-check rejection counts from the manifest; empty for a run made before they existed."""
    by = counts.get("rejected_by_check")
    if not by:
        return ""
    parts = ", ".join(f"{html.escape(str(name))} {n}" for name, n in by.items())
    return f" &middot; rejected by (a sample may fail several): {parts}"


def _badge(name: str, value: bool | None, enforced: bool = True) -> str:
    """A check's result; a check that was computed but did not gate is marked "(not enforced)"."""
    state = {True: ("pass", "&#10003;"), False: ("fail", "&#10007;"), None: ("na", "n/a")}[value]
    note = (
        "" if enforced else ' <i title="computed, but not a reason to reject in this run">(not enforced)</i>'
    )
    return f'<span class="badge {state[0]}">{name} {state[1]}{note}</span>'


def _badges(checks: dict[str, Any]) -> str:
    # Rows of runs made before a check existed lack its flag (shown n/a) and its "enforced" list (all gating).
    enforced = checks.get("enforced")
    return " ".join(
        _badge(label, checks.get(name), enforced is None or name in enforced)
        for name, label in (
            ("au", "AU"),
            ("emotion", "emotion"),
            ("format", "format"),
            ("consistency", "consistency"),
        )
    )


def _card(row: dict[str, Any], folder: Path, thumbnail: int, images: str) -> str:
    from facial_r1.parsing import parse

    info = (row.get("meta_info") or {}).get("synthesis") or {}
    checks = info.get("checks") or {}
    parsed = parse(row["_output"], label_set=row.get("label_set") or None)
    esc = html.escape
    src = _image_src(row["image"], folder, thumbnail, images)
    image = f'<img src="{esc(src)}" alt="face">' if src else '<div class="noimg">image unavailable</div>'
    gold_aus = "not annotated" if row.get("AUs") is None else (", ".join(row["AUs"]) or "none (relaxed)")
    label = ", ".join(row.get("labels") or []) or "no label"
    problems = "".join(f"<li>{esc(p)}</li>" for p in (checks.get("problems") or info.get("problems") or []))
    decision = "accept" if row["_accepted"] else "reject"
    radios = "".join(
        f'<label><input type="radio" name="d-{esc(sample_key(row))}" value="{d}"{" checked" if d == decision else ""}>'
        f" {d}</label>"
        for d in DECISIONS
    )
    reasoning = esc(parsed.think if parsed.think is not None else row["_output"])
    concluded = checks.get("concluded_emotion", parsed.concluded_emotion)
    return f"""<article class="card {decision}" data-id="{esc(str(row["id"]))}" data-dataset="{esc(str(row.get("dataset")))}" data-auto="{decision}">
  {image}
  <div class="body">
    <h3>{esc(str(row["id"]))} <small>{esc(str(row.get("dataset")))} &middot; auto: {decision} &middot; attempt {info.get("attempt", "?")}</small></h3>
    <p><b>Gold</b>: AUs {esc(gold_aus)}; label {esc(label)}</p>
    <p><b>Response</b>: AUs {esc(", ".join(checks.get("predicted_aus") or []) or "none")}; reasoning concludes {esc(concluded or "no emotion")}; answer {esc(str(parsed.answer).strip() if parsed.answer is not None else "missing")}</p>
    <p>{_badges(checks)}</p>
    <p class="think">{reasoning}</p>
    {f'<ul class="problems">{problems}</ul>' if problems else ""}
    <div class="decide">{radios} <input class="note" type="text" placeholder="note"></div>
  </div>
</article>"""


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:0;background:#f4f4f4}}
header{{position:sticky;top:0;background:#222;color:#eee;padding:8px 16px;z-index:1}}
header button{{margin-right:6px}}
main{{padding:12px;display:grid;gap:10px}}
.card{{display:flex;gap:12px;background:#fff;border-left:6px solid #999;padding:10px;border-radius:4px}}
.card.accept{{border-color:#2a2}} .card.reject{{border-color:#c33}}
.card img,.noimg{{width:160px;height:160px;object-fit:contain;background:#ddd}}
.body{{flex:1}} h3{{margin:0 0 4px}} small{{color:#666;font-weight:normal}} p{{margin:4px 0}}
.think{{background:#f8f8f0;padding:6px;white-space:pre-wrap}}
.badge{{padding:1px 6px;border-radius:3px;font-size:90%}}
.pass{{background:#cfc}} .fail{{background:#fcc}} .na{{background:#ddd}}
.problems{{color:#a22;margin:4px 0}} .note{{width:50%}}
</style></head>
<body>
<header><b>{title}</b> &middot; {summary}<br>
Show: <button data-show="all">all</button><button data-show="accept">auto-accepted</button><button data-show="reject">auto-rejected</button>
&middot; <button id="download">download review.jsonl</button>
then: <code>python -m facial_r1.synthesis.review apply --run &lt;run dir&gt; --review review.jsonl --out final.jsonl</code>
</header>
<main>
{cards}
</main>
<script>
document.querySelectorAll("button[data-show]").forEach(b => b.onclick = () => {{
  document.querySelectorAll(".card").forEach(c => {{
    c.style.display = (b.dataset.show === "all" || c.dataset.auto === b.dataset.show) ? "" : "none";
  }});
}});
document.getElementById("download").onclick = () => {{
  const lines = [];
  document.querySelectorAll(".card").forEach(c => {{
    const picked = c.querySelector("input[type=radio]:checked");
    const note = c.querySelector(".note").value;
    lines.push(JSON.stringify({{id: c.dataset.id, dataset: c.dataset.dataset,
      decision: picked ? picked.value : c.dataset.auto, note: note}}));
  }});
  const blob = new Blob([lines.join("\\n") + "\\n"], {{type: "application/x-ndjson"}});
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob); a.download = "review.jsonl"; a.click();
}};
</script>
</body></html>
"""


# ---- review file ----------------------------------------------------------------------------------------------------


def read_review(path: str | Path) -> list[dict[str, Any]]:
    """Entries ``{"id", "dataset" (or None), "decision", "note", "line"}`` of a review file (JSON lines or CSV)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("review file not found", str(path))
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not {"id", "decision"} <= set(reader.fieldnames or []):
                raise DataError(
                    f"a review CSV needs the columns id, decision (got {reader.fieldnames})", str(path), 1
                )
            raw = [(reader.line_num, dict(row)) for row in reader]
    else:
        raw = []
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(f"invalid JSON: {err}", str(path), number) from err
            if not isinstance(obj, dict):
                raise DataError("a line must hold one JSON object", str(path), number)
            raw.append((number, obj))
    entries = []
    for number, obj in raw:
        decision = str(obj.get("decision") or "").strip().lower()
        if not obj.get("id") or decision not in DECISIONS:
            raise DataError(
                f"each entry needs an id and a decision in {DECISIONS}, got {obj}", str(path), number
            )
        entries.append({"id": str(obj["id"]), "dataset": obj.get("dataset") or None, "decision": decision,
                        "note": str(obj.get("note") or ""), "line": number})  # fmt: skip
    return entries


def apply_review(run_dir: str | Path, review: str | Path, out: str | Path) -> dict[str, int]:
    """Write the reviewed dataset of ``run_dir`` to ``out`` (module docstring); returns the counts."""
    rows = run_rows(run_dir)
    by_key = {sample_key(row): row for row in rows}
    by_id: dict[str, list[str]] = {}
    for key, row in by_key.items():
        by_id.setdefault(str(row["id"]), []).append(key)
    decisions: dict[str, dict[str, Any]] = {}
    for entry in read_review(review):
        if entry["dataset"] is not None:
            key = f"{entry['dataset']}/{entry['id']}"
            if key not in by_key:
                raise DataError(f"{key} is not a sample of {run_dir}", str(review), entry["line"])
        else:
            keys = by_id.get(entry["id"], [])
            if len(keys) != 1:
                problem = "is not a sample of" if not keys else "is ambiguous (add a dataset field) in"
                raise DataError(f"id {entry['id']!r} {problem} {run_dir}", str(review), entry["line"])
            key = keys[0]
        decisions[key] = entry  # a later line overrides an earlier one (re-reviewing appends)

    counts = {"kept": 0, "removed": 0, "added": 0, "unreviewed": 0}
    final = []
    for key, row in by_key.items():
        entry = decisions.get(key)
        keep = row["_accepted"] if entry is None else entry["decision"] == "accept"
        counts["unreviewed"] += entry is None
        if row["_accepted"] and not keep:
            counts["removed"] += 1
        if keep:
            counts["kept" if row["_accepted"] else "added"] += 1
            final.append(_final_row(row, entry))
    out = write_text_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in final))
    counts["total"] = len(final)
    write_json_atomic(
        out.with_name(out.name + ".summary.json"), {**counts, "run": str(run_dir), "review": str(review)}
    )
    return counts


def _final_row(row: dict[str, Any], entry: dict[str, Any] | None) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if not k.startswith("_")}
    meta = dict(out.get("meta_info") or {})
    info = dict(meta.get("synthesis") or {})
    if not row["_accepted"]:  # promoted by the reviewer: the last response becomes the reference text
        out["description"] = row["_output"]
    if entry is not None:
        info["review"] = {"decision": entry["decision"], "note": entry["note"]}
    meta["synthesis"] = info
    out["meta_info"] = meta
    return out


# ---- command line -------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m facial_r1.synthesis.review", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    page = commands.add_parser("html", help="(re)write the review page of a run")
    page.add_argument("--run", required=True, help="synthesis run folder")
    page.add_argument("--out", default=None, help="output file (default <run>/review.html)")
    page.add_argument("--max-rows", type=int, default=None, help="cap on cards (seeded random subset)")
    page.add_argument("--thumbnail", type=int, default=160, help="thumbnail edge in pixels")
    page.add_argument("--images", choices=("embed", "link"), default="embed")
    apply = commands.add_parser("apply", help="apply a review file -> final dataset (JSON lines)")
    apply.add_argument("--run", required=True, help="synthesis run folder")
    apply.add_argument("--review", required=True, help="review.jsonl or review.csv")
    apply.add_argument("--out", required=True, help="output JSON-lines file")
    args = parser.parse_args(argv)
    try:
        if args.command == "html":
            path = write_review_html(args.run, args.out, args.max_rows, args.thumbnail, args.images)
            print(path)
        else:
            print(json.dumps(apply_review(args.run, args.review, args.out)))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
