"""A Hugging Face transformers wav2vec2 as an independent reference for the pack's encoding (tests and benchmarks only:
the pack itself runs ComfyUI's own wav2vec2)."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from fantasy_core.audio.embeds import AudioEmbeds
from fantasy_core.audio.track import WAV2VEC_SAMPLE_RATE, normalize, prepare_audio
from fantasy_core.audio.wav2vec import CHUNK_SECONDS, CONTEXT_SECONDS, AudioEncoderError, FeatureGeometry, encode_in_chunks


class Wav2VecEncoder:
    """A Hugging Face wav2vec2 model plus the one feature-extractor setting that matters here, ``do_normalize``."""

    def __init__(self, model: torch.nn.Module, do_normalize: bool):
        self.model = model.eval().requires_grad_(False)
        self.do_normalize = do_normalize
        config = model.config
        self.geometry = FeatureGeometry(tuple(config.conv_kernel), tuple(config.conv_stride))
        self.hidden_size = config.hidden_size

    @classmethod
    def from_folder(cls, folder: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

        for name in ("config.json", "preprocessor_config.json"):
            if not os.path.isfile(os.path.join(folder, name)):
                raise AudioEncoderError(
                    f"wav2vec2 folder '{folder}' has no {name}. Download facebook/wav2vec2-base-960h (config.json, "
                    "preprocessor_config.json and the weights) into that folder."
                )
        try:
            model = Wav2Vec2Model.from_pretrained(folder, local_files_only=True)
            extractor = Wav2Vec2FeatureExtractor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as error:
            raise AudioEncoderError(f"wav2vec2 folder '{folder}' could not be loaded: {error}") from error
        if extractor.sampling_rate != WAV2VEC_SAMPLE_RATE:
            raise AudioEncoderError(
                f"wav2vec2 folder '{folder}' expects {extractor.sampling_rate} Hz audio; FantasyTalking uses a "
                "16 kHz wav2vec2 (facebook/wav2vec2-base-960h)."
            )
        return cls(model.to(device=device, dtype=dtype), bool(extractor.do_normalize))

    @torch.inference_mode()
    def encode(
        self,
        waveform: torch.Tensor,
        chunk_seconds: float = CHUNK_SECONDS,
        context_seconds: float = CONTEXT_SECONDS,
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """Mono 16 kHz waveform [T] -> features [L, hidden]; normalised first when the extractor says so."""
        parameter = next(self.model.parameters())

        def forward(samples: torch.Tensor) -> torch.Tensor:
            return self.model(samples.to(parameter.device, parameter.dtype)).last_hidden_state

        waveform = normalize(waveform) if self.do_normalize else waveform
        return encode_in_chunks(waveform, forward, self.geometry, chunk_seconds, context_seconds, progress)


def encode_voice_track(waveform, sample_rate, encoder: Wav2VecEncoder, fps=23, max_frames=81, progress=None) -> AudioEmbeds:
    audio = prepare_audio(waveform, sample_rate, fps, max_frames)
    return AudioEmbeds.from_features(encoder.encode(audio.waveform, progress=progress), audio)
