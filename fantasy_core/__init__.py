"""FantasyTalking audio conditioning in pure PyTorch (no ComfyUI imports)."""

from .adapter import AdapterConfig, AudioContext, CastingOps, FantasyTalkingAdapter
from .audio import AudioInputError, PreparedAudio, official_num_frames, prepare_audio
from .checkpoint import AdapterCheckpointError, AdapterWeights, build_adapter, load_adapter_weights
from .conditioning import AudioConditioning, encode_voice_track
from .guidance import combine_guidance, needs_uncond_pass, scheduled_audio_cfg
from .injection import AdapterMismatchError, AudioInjection
from .wav2vec import AudioEncoderError, Wav2VecEncoder
from .windows import AudioWindows, compute_audio_windows, gather_windows

__all__ = [
    "AdapterCheckpointError",
    "AdapterConfig",
    "AdapterMismatchError",
    "AdapterWeights",
    "AudioConditioning",
    "AudioContext",
    "AudioEncoderError",
    "AudioInjection",
    "AudioInputError",
    "AudioWindows",
    "CastingOps",
    "FantasyTalkingAdapter",
    "PreparedAudio",
    "Wav2VecEncoder",
    "build_adapter",
    "combine_guidance",
    "compute_audio_windows",
    "encode_voice_track",
    "gather_windows",
    "load_adapter_weights",
    "needs_uncond_pass",
    "official_num_frames",
    "prepare_audio",
    "scheduled_audio_cfg",
]
