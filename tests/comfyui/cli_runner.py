"""``python -m fantasy_train`` as a user runs it, in a process of its own, with the tiny encoders in place of the
files the validation render would load (the tiny text encoder has no file format), and at exit a report of every
pack module loaded: python cli_runner.py REPORT.json MODELS_FOLDER -- ARGS..."""

import atexit
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
PACK = os.path.dirname(os.path.dirname(here))
sys.path[:0] = [PACK, os.path.dirname(here)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def report(path: str) -> None:
    """Every file of the pack (not of its tests) in sys.modules, with the names it was loaded under."""
    names = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and os.path.realpath(file).startswith(PACK + os.sep) and not os.path.realpath(file).startswith(os.path.join(PACK, "tests")):
            names.setdefault(os.path.relpath(os.path.realpath(file), PACK), []).append(name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(names, f)


if __name__ == "__main__":
    report_path, models, separator, *arguments = sys.argv[1:]
    assert separator == "--"
    atexit.register(report, report_path)
    from fantasy_comfy.host import import_comfyui

    import_comfyui(os.environ["COMFYUI_PATH"], "--cpu")
    import comfy
    from dataset_models import tiny_encoders

    import fantasy_train.validation

    encoders = tiny_encoders(comfy, models)
    fantasy_train.validation.load_encoders = lambda *args, **kwargs: encoders
    from fantasy_train.cli import main

    sys.exit(main(arguments))
