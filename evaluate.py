"""Evaluate a model on one split: ``python evaluate.py [model.path=<export>] [dataset=...] [split=test] [limit=N]``.

Thin on purpose: compose the config, hand it to :func:`facial_r1.evaluation.cli.evaluate`.
"""

import hydra
from omegaconf import DictConfig

from facial_r1.runtime import register_resolvers

register_resolvers()  # before Hydra composes: conf/hydra/default.yaml names one (multirun folder names)


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from facial_r1.evaluation.cli import evaluate

    return evaluate(cfg)


if __name__ == "__main__":
    main()
