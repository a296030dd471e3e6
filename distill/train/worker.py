"""One training process of a multi-process run: `accelerate launch -m distill.train.worker CONFIG.yaml`
(the train stage writes CONFIG.yaml, the run's resolved config, and launches this)."""
from __future__ import annotations

import sys

from distill.train import train
from distill.train.config import load_config


def main(argv: list[str]) -> None:
    path, *flags = argv
    train(load_config(path), resume="--resume" in flags, overwrite="--overwrite" in flags)


if __name__ == "__main__":
    main(sys.argv[1:])
