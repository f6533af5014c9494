"""An MP4 (h264 + AAC) written frame batch by frame batch, so a long video never sits in memory whole."""

from __future__ import annotations

import math
from fractions import Fraction

import av
import torch


class StreamingMp4:
    def __init__(self, path: str, fps: float, audio: dict | None):
        self.container = av.open(path, mode="w")
        self.rate = Fraction(round(fps * 1000), 1000)
        self.video = self.container.add_stream("h264", rate=self.rate)
        self.video.pix_fmt = "yuv420p"
        self.audio = audio  # its stream must exist before the first frame is muxed (that writes the header)
        self.audio_stream = self.container.add_stream("aac", rate=int(audio["sample_rate"])) if audio is not None else None
        self.frames = 0

    def write(self, frames: torch.Tensor) -> None:
        """frames [T, H, W, 3] in 0..1; the first batch fixes the size (cropped to even numbers for yuv420p)."""
        if self.frames == 0:
            self.video.height, self.video.width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
        pixels = (frames[:, : self.video.height, : self.video.width, :3] * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        for image in pixels:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            self.container.mux(self.video.encode(frame))
        self.frames += pixels.shape[0]

    def close(self) -> None:
        self.container.mux(self.video.encode(None))
        if self.audio_stream is not None:
            rate, stream = int(self.audio["sample_rate"]), self.audio_stream
            waveform = self.audio["waveform"][0, :, : math.ceil(rate * self.frames / self.rate)]
            frame = av.AudioFrame.from_ndarray(waveform.T.reshape(1, -1).float().contiguous().numpy(), format="flt",
                                               layout="mono" if waveform.shape[0] == 1 else "stereo")
            frame.sample_rate, frame.pts = rate, 0
            self.container.mux(stream.encode(frame))
            self.container.mux(stream.encode(None))
        self.container.close()
