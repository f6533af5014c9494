"""Runs the data preparation with the tiny encoders in a process of its own (the resume test kills it):
python dataset_runner.py VIDEOS OUT MODELS WORKERS."""

import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(os.path.dirname(here)), os.path.dirname(here)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

if __name__ == "__main__":
    from fantasy_comfy.host import import_comfyui

    import_comfyui(os.environ["COMFYUI_PATH"], "--cpu")
    import comfy
    from dataset_models import MODEL_NAMES, tiny_encoders

    from fantasy_core.dataset.analyse import AnalysisModels
    from fantasy_train.prepare import RunOptions, prepare_dataset

    videos, out, models, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    from test_dataset_in_comfyui import SETTINGS, SHARD

    analysis = AnalysisModels(SETTINGS, arcface_path=os.path.join(models, "arcface.onnx"))
    prepare_dataset(
        videos,
        out,
        SETTINGS,
        tiny_encoders(comfy, models),
        MODEL_NAMES,
        analysis,
        options=RunOptions(workers=workers, clips_per_shard=SHARD, show_progress=False),
    )
