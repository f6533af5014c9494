"""HTTP helpers for tests that talk to a ComfyUI server on loopback."""

import json
import socket
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, path, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(server, prompt_id, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = http(server["port"], f"/history/{prompt_id}")
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
            entry = history[prompt_id]
            assert entry["status"]["status_str"] == "success", (entry["status"], server["log"].read_text()[-4000:])
            return entry["outputs"]
        time.sleep(0.5)
    raise TimeoutError(server["log"].read_text()[-4000:])


def save_astronaut(path) -> None:
    """scikit-image's astronaut photo: one real, frontal face (≈104 px wide in 512 x 512)."""
    import skimage.data
    from PIL import Image

    Image.fromarray(skimage.data.astronaut()).save(path)
