"""A small folder of talking videos made from real parts: the astronaut (``skimage.data.astronaut()``) with a moving
mouth and eyelids, espeak-ng speech (``tests/media``), a faceless video with speech, a silent one, one with a scene
cut, and a corrupt file."""

from __future__ import annotations

import os
import wave

import numpy as np

MEDIA = os.path.join(os.path.dirname(__file__), "media")
VIDEO_FPS = 25
VIDEO_SIZE = 256


def speech(name: str) -> tuple[np.ndarray, int]:
    with wave.open(os.path.join(MEDIA, f"speech_{name}.wav")) as f:
        samples = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16).astype(np.float32) / 32768
        return samples, f.getframerate()


def write_video(path: str, frames: list[np.ndarray], fps: int, audio: tuple[np.ndarray, int] | None) -> str:
    """H.264 video (and AAC sound) in an MP4, as phones and editors write them."""
    import av

    with av.open(path, "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"crf": "12"})
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        sound = container.add_stream("aac", rate=audio[1], layout="mono") if audio is not None else None
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if sound is not None:
            samples, rate = audio
            for start in range(0, len(samples), 1024):
                chunk = av.AudioFrame.from_ndarray(samples[None, start : start + 1024].astype(np.float32), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = rate, start
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode(None):
                container.mux(packet)
    return path


def _scaled(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((VIDEO_SIZE, VIDEO_SIZE), Image.BILINEAR))


def make_videos(folder: str, talking: int = 2, extras: bool = True) -> dict:
    """``talking`` astronaut videos with speech (two clips each at 12 fps x 25 frames), and with ``extras`` the
    faceless, silent, scene-cut and corrupt inputs. Returns name -> path."""
    from motion_clips import clip
    from skimage import data

    os.makedirs(folder, exist_ok=True)
    seconds = 4.4
    count = int(seconds * VIDEO_FPS)
    made = {}
    for index in range(talking):
        voice = speech("ab"[index % 2])
        frames = clip(frames=count, expression=10 + 4 * (index % 3), body=3 * (index % 2), size=VIDEO_SIZE)
        made[f"talk_{index}"] = write_video(os.path.join(folder, f"talk_{index}.mp4"), frames, VIDEO_FPS, voice)
    if extras:
        coffee = _scaled(data.coffee()[:, 100:500])
        made["faceless"] = write_video(os.path.join(folder, "faceless.mp4"), [coffee] * count, VIDEO_FPS, speech("a"))
        still = clip(frames=1, size=VIDEO_SIZE)[0]
        silence = (np.zeros(int(seconds * 16000), np.float32), 16000)
        made["silent"] = write_video(os.path.join(folder, "silent.mp4"), [still] * count, VIDEO_FPS, silence)
        cut = [still] * VIDEO_FPS + [coffee] * (count - VIDEO_FPS)  # a cut 1 s in
        made["cut"] = write_video(os.path.join(folder, "cut.mp4"), cut, VIDEO_FPS, speech("b"))
        made["corrupt"] = os.path.join(folder, "corrupt.mp4")
        with open(made["corrupt"], "wb") as f:
            f.write(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(4000))
    return made
