"""A small ComfyUI HTTP/websocket client (standard library plus websocket-client; never torch or ComfyUI)."""

from __future__ import annotations

import json
import mimetypes
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator


class CommandError(Exception):
    """A failure the user can act on; the message is printed as it is and the process exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INVALID, EXIT_MISSING_MODELS, EXIT_EXECUTION, EXIT_INTERRUPTED = 2, 3, 4, 5, 6, 130


class ComfyClient:
    def __init__(self, server: str, timeout: float = 30.0):
        self.base = server.rstrip("/")
        self.timeout = timeout
        self.client_id = str(uuid.uuid4())

    def _request(self, path: str, data: bytes | None = None, headers: dict | None = None):
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError) as error:
            raise CommandError(
                f"ComfyUI server at {self.base} is not reachable ({getattr(error, 'reason', error)}). "
                "Start ComfyUI, pass --server, or set COMFYUI_PATH to let this command start one.",
                EXIT_UNREACHABLE,
            ) from error

    def get_json(self, path: str):
        with self._request(path) as response:
            return json.loads(response.read())

    def post_json(self, path: str, body: dict):
        data = json.dumps(body).encode()
        try:
            with self._request(path, data, {"Content-Type": "application/json"}) as response:
                text = response.read()
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
        return 200, json.loads(text) if text.strip() else {}

    def is_up(self) -> bool:
        try:
            self.get_json("/system_stats")
            return True
        except CommandError:
            return False

    def upload(self, path: str) -> str:
        """Upload a file to ComfyUI's input folder (the route is /upload/image for every file type)."""
        boundary = uuid.uuid4().hex
        name = os.path.basename(path)
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        with open(path, "rb") as f:
            content = f.read()
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\nContent-Type: {kind}\r\n\r\n'.encode()
            + content
            + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n--{boundary}--\r\n'.encode()
        )
        with self._request("/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}) as response:
            reply = json.loads(response.read())
        return f"{reply['subfolder']}/{reply['name']}" if reply.get("subfolder") else reply["name"]

    def queue(self, graph: dict) -> str:
        status, reply = self.post_json("/prompt", {"prompt": graph, "client_id": self.client_id})
        if status != 200:
            raise CommandError(format_validation_error(reply), EXIT_INVALID)
        return reply["prompt_id"]

    def cancel(self, prompt_id: str) -> None:
        self.post_json("/queue", {"delete": [prompt_id]})
        self.post_json("/interrupt", {"prompt_id": prompt_id})

    def download(self, entry: dict, target: str) -> None:
        query = urllib.parse.urlencode(
            {"filename": entry["filename"], "subfolder": entry.get("subfolder", ""), "type": entry.get("type", "output")}
        )
        with self._request(f"/view?{query}") as response, open(target, "wb") as f:
            f.write(response.read())

    def events(self) -> Iterator[dict]:
        """The websocket's JSON messages (binary preview frames are skipped)."""
        try:
            import websocket  # websocket-client
        except ImportError as error:
            raise CommandError(
                "Following the job needs the 'websocket-client' package: pip install -r requirements.txt in the pack folder.", EXIT_USAGE
            ) from error

        url = self.base.replace("http://", "ws://").replace("https://", "wss://") + f"/ws?clientId={self.client_id}"
        connection = websocket.create_connection(url, timeout=None)
        try:
            while True:
                message = connection.recv()
                if isinstance(message, str):
                    yield json.loads(message)
        finally:
            connection.close()


def format_validation_error(reply: dict) -> str:
    """ComfyUI's /prompt 400 reply as lines a person can read."""
    lines = [f"ComfyUI rejected the workflow: {reply.get('error', {}).get('message', 'invalid prompt')}"]
    for node_id, node in sorted(reply.get("node_errors", {}).items()):
        for error in node.get("errors", []):
            detail = error.get("details") or error.get("message")
            lines.append(f"  node {node_id} ({node.get('class_type')}): {detail}")
    return "\n".join(lines)


def follow(client: ComfyClient, prompt_id: str, events: Iterator[dict], on_progress: Callable[[int, int, str], None]) -> None:
    """Consume websocket events for ``prompt_id`` until it finishes; raise CommandError on failure."""
    for event in events:
        kind, data = event.get("type"), event.get("data", {})
        if data.get("prompt_id") not in (None, prompt_id):
            continue
        if kind == "progress":
            on_progress(data["value"], data["max"], str(data.get("node")))
        elif kind == "execution_error":
            raise CommandError(
                f"ComfyUI failed in node {data.get('node_id')} ({data.get('node_type')}): {data.get('exception_message', '').strip()}",
                EXIT_EXECUTION,
            )
        elif kind == "execution_interrupted":
            raise CommandError("The job was interrupted on the ComfyUI server.", EXIT_INTERRUPTED)
        elif kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
            return
        elif kind == "execution_success":
            return
