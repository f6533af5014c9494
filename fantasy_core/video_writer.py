"""An MP4 (h264 + AAC) written frame batch by frame batch, so a long video never sits in memory whole."""

from __future__ import annotations

import math
import os
from fractions import Fraction

import av
import torch


def audio_for_muxing(waveform: torch.Tensor) -> tuple[torch.Tensor, str]:
    """[..., C, T] -> the waveform and its AAC channel layout. More than two channels are mixed down to mono (the mix
    the model hears): naming them "stereo" would interleave them into a track C/2 times too long."""
    if waveform.shape[-2] > 2:
        waveform = waveform.mean(dim=-2, keepdim=True)
    return waveform, "mono" if waveform.shape[-2] == 1 else "stereo"


class StreamingMp4:
    """Opens the file with the first frames; ``close`` finishes it, ``discard`` removes whatever was written."""

    def __init__(self, path: str, fps: float, audio: dict | None):
        self.path = path
        self.rate = Fraction(round(fps * 1000), 1000)
        self.audio = audio
        self.container = None
        self.frames = 0

    def _open(self, height: int, width: int) -> None:
        self.container = av.open(self.path, mode="w")
        self.video = self.container.add_stream("h264", rate=self.rate)
        self.video.pix_fmt = "yuv420p"
        self.video.height, self.video.width = height // 2 * 2, width // 2 * 2  # yuv420p needs even sizes
        # The audio stream must exist before the first frame is muxed (that writes the header).
        self.audio_stream = self.container.add_stream("aac", rate=int(self.audio["sample_rate"])) if self.audio is not None else None

    def write(self, frames: torch.Tensor) -> None:
        """frames [T, H, W, 3] in 0..1."""
        if self.container is None:
            self._open(frames.shape[1], frames.shape[2])
        pixels = (frames[:, : self.video.height, : self.video.width, :3] * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        for image in pixels:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            self.container.mux(self.video.encode(frame))
        self.frames += pixels.shape[0]

    def close(self) -> None:
        if self.container is None:
            raise ValueError("no video frame was made, so there is no video to write.")
        self.container.mux(self.video.encode(None))
        if self.audio_stream is not None:
            rate = int(self.audio["sample_rate"])
            waveform, layout = audio_for_muxing(self.audio["waveform"][0, :, : math.ceil(rate * self.frames / self.rate)])
            frame = av.AudioFrame.from_ndarray(waveform.T.reshape(1, -1).float().contiguous().numpy(), format="flt", layout=layout)
            frame.sample_rate, frame.pts = rate, 0
            self.container.mux(self.audio_stream.encode(frame))
            self.container.mux(self.audio_stream.encode(None))
        self.container.close()
        self.container = None

    def discard(self) -> None:
        """After an error: release the file without encoding anything more, and remove it."""
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - the error that brought us here is the one to report
                pass
            self.container = None
        try:
            os.remove(self.path)
        except OSError:
            pass  # never written, or not removable: the original error still matters more
