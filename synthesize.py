"""Stage 3, data synthesis: ``python synthesize.py [model.path=<export>] [dataset=...] [limit=N] [key=value ...]``.

Thin on purpose: compose the config, hand it to :func:`facial_r1.synthesis.run.synthesize`. Without ``model.path`` /
``model.init_from`` it uses the newest exported model under ``paths.output_root``. Resume an interrupted run with the
same command plus ``hydra.run.dir=<its run folder>``. ``python synthesize.py --help`` lists the config groups.
"""

import hydra
from omegaconf import DictConfig

from facial_r1.runtime import register_resolvers

register_resolvers()  # before Hydra composes: conf/hydra/default.yaml names one (multirun folder names)


@hydra.main(config_path="conf", config_name="synthesize", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from facial_r1.synthesis.run import synthesize

    return synthesize(cfg)


if __name__ == "__main__":
    main()
