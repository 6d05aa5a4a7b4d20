"""Train one stage: ``python train.py [stage=sft|grpo] [model=...] [dataset=...] [reward=...] [experiment=...]``.

Thin on purpose: compose the config, hand it to :func:`facial_r1.training.run.train`. ``python train.py --help``
lists the config groups and their options.
"""

import hydra
from omegaconf import DictConfig

from facial_r1.runtime import register_resolvers

register_resolvers()  # before Hydra composes: conf/hydra/default.yaml names one (multirun folder names)


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from facial_r1.training.run import train

    return train(cfg)


if __name__ == "__main__":
    main()
