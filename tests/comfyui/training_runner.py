"""Runs one training in a process of its own (the distributed and kill tests): python training_runner.py CONFIG.json
(also under torch.distributed.run)."""

import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(os.path.dirname(here)), os.path.dirname(here)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

if __name__ == "__main__":
    from fantasy_comfy.host import import_comfyui

    import_comfyui(os.environ["COMFYUI_PATH"], "--cpu")
    from fantasy_core.training.config import config_from_dict
    from fantasy_train.trainer import train

    with open(sys.argv[1], encoding="utf-8") as f:
        train(config_from_dict(json.load(f)), show_progress=False)
