"""`fantasytalking models --evaluation`: which metric weights the models folder has, and the download of a missing
one from a local server, its published hash checked."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading

import pytest

from fantasy_core.evaluation import catalog
from fantasytalking_cli.__main__ import main


def test_the_listing_says_which_files_are_there_and_exits_5_while_one_is_missing(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "models" / "evaluation"
    (folder / "dino-vitb16").mkdir(parents=True)
    (folder / "dino-vitb16" / "config.json").write_text("{}")
    (folder / "syncnet_v2.model").write_bytes(b"x")
    assert main(["models", "--evaluation", "--comfyui", str(tmp_path)]) == 5
    lines = {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines["syncnet_v2.model"] == "yes" and lines["dino-vitb16"] == "yes" and lines["i3d_torchscript.pt"] == "no"
    assert set(lines) == {entry.name for entry in catalog.WEIGHTS}
    for entry in catalog.WEIGHTS:
        if entry.optional or catalog.is_present(str(folder), entry):
            continue
        if entry.is_folder:
            (folder / entry.name).mkdir()
            (folder / entry.name / "config.json").write_text("{}")
        else:
            (folder / entry.name).write_bytes(b"x")
    assert main(["models", "--evaluation", "--comfyui", str(tmp_path)]) == 0  # the optional ES weights may be absent
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    assert main(["models", "--evaluation"]) == 5
    assert "no ComfyUI folder known (give --comfyui or set COMFYUI_PATH)" in capsys.readouterr().err
    assert main(["models", "--evaluation", "--download"]) == 2
    assert "--download needs --comfyui or COMFYUI_PATH to know where the models folder is." in capsys.readouterr().err


@pytest.fixture
def served(tmp_path):
    """A local HTTP server holding one file."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "weights.bin").write_bytes(b"metric weights" * 100)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "www"), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/weights.bin", hashlib.sha256(b"metric weights" * 100).hexdigest()
    server.shutdown()


def test_download_fetches_a_missing_file_and_refuses_one_that_does_not_match_its_published_hash(served, tmp_path, monkeypatch, capsys):
    url, digest = served
    good = catalog.MetricWeights("raft", "raft_file.pth", ("sd",), "a local server", url=url, sha256_prefix=digest[:8])
    monkeypatch.setattr(catalog, "WEIGHTS", (good,))
    assert main(["models", "--evaluation", "--comfyui", str(tmp_path / "a"), "--download"]) == 0
    assert (tmp_path / "a" / "models" / "evaluation" / "raft_file.pth").read_bytes() == b"metric weights" * 100
    wrong = catalog.MetricWeights("raft", "raft_file.pth", ("sd",), "a local server", url=url, sha256_prefix="00000000")
    monkeypatch.setattr(catalog, "WEIGHTS", (wrong,))
    assert main(["models", "--evaluation", "--comfyui", str(tmp_path / "b"), "--download"]) == 5
    assert "could not download raft_file.pth from a local server: invalid hash value" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "b" / "models" / "evaluation" / "raft_file.pth")
