"""``python -m facial_r1.data.synthfaces``: export splits, or draw contact sheets.

python -m facial_r1.data.synthfaces --out DIR --n N --seed S [--split train] [--image-size 112]
python -m facial_r1.data.synthfaces --contact-sheet docs/synthfaces_contact_sheet.png [--au-sheet au.png]
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from facial_r1.data.synthfaces.config import SynthFacesConfig
from facial_r1.data.synthfaces.export import Describe, export_split
from facial_r1.data.synthfaces.sheets import au_sheet, contact_sheet

log = logging.getLogger("facial_r1.data.synthfaces")


def template_describer() -> Describe | None:
    """The project's template teacher, or None (with a warning) when it cannot be imported."""
    try:
        from facial_r1.data.teachers.template import TemplateTeacher

        return TemplateTeacher().describe
    except Exception as err:  # noqa: BLE001 - any failure just means "no descriptions"
        log.warning(
            "template teacher unavailable (%s: %s); writing description=None", type(err).__name__, err
        )
        return None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m facial_r1.data.synthfaces",
        description="SynthFACS: export procedural faces with exact AU and emotion truth, or draw contact sheets.",
    )
    p.add_argument("--out", type=Path, help="output folder (writes <split>.jsonl and images/<split>/)")
    p.add_argument("--n", type=int, default=1000, help="samples per split (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--split", default="train", help="split name, or several separated by commas (train,val,test)"
    )
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument(
        "--no-describe", action="store_true", help="leave description empty instead of the template teacher"
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--contact-sheet", type=Path, help="write a captioned grid of samples to this PNG")
    p.add_argument(
        "--au-sheet", type=Path, help="write one identity showing each AU at intensity E to this PNG"
    )
    args = p.parse_args(argv)
    if args.out is None and args.contact_sheet is None and args.au_sheet is None:
        p.error("nothing to do: give --out, --contact-sheet or --au-sheet")
    if args.n < 0:
        p.error("--n must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    config = SynthFacesConfig(image_size=args.image_size)
    if args.contact_sheet:
        log.info("contact sheet -> %s", contact_sheet(args.contact_sheet, seed=args.seed, config=config))
    if args.au_sheet:
        log.info("AU sheet -> %s", au_sheet(args.au_sheet, seed=args.seed, config=config))
    if args.out is not None:
        describe = None if args.no_describe else template_describer()
        for split in [s.strip() for s in args.split.split(",") if s.strip()]:
            path = export_split(
                args.out, split, args.n, args.seed, config, describe, progress=not args.no_progress
            )
            log.info("%d samples -> %s", args.n, path)


if __name__ == "__main__":
    main()
