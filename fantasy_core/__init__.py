"""FantasyTalking in pure PyTorch (no ComfyUI imports), one package per modality:

- ``audio/``: voice track preparation, wav2vec2 chunking, official windows, the audio adapter and its files;
- ``dit/``: what every modality shares inside Wan's DiT: the injection layer (twins of layers of Wan's cross-attention
  and time embedding that add the modalities' terms), its attention and casting layers;
- ``sampling_run``: what stays constant while a patched model samples (keys, values, embeddings), made once per run;
- ``frames``: frame arithmetic (4k+1 videos, latent <-> video frames); ``passes``: what each sampling pass hears;
  ``guidance``: guidance schedule and sigmas; ``long_video``: segment planning and blending.
"""

from .audio.adapter import AudioAdapter, AudioAdapterConfig, AudioContext
from .audio.embeds import AudioEmbeds
from .audio.track import AudioInputError, PreparedAudio, prepare_audio
from .audio.wav2vec import AudioEncoderError
from .audio.weights import AdapterCheckpointError, AdapterWeights, build_adapter, load_adapter_weights
from .audio.windows import AudioWindows, compute_audio_windows, gather_windows
from .dit.injection import Injection, ModelMismatchError
from .frames import official_num_frames
from .passes import PassSettings

__all__ = [
    "AdapterCheckpointError",
    "AdapterWeights",
    "AudioAdapter",
    "AudioAdapterConfig",
    "AudioContext",
    "AudioEmbeds",
    "AudioEncoderError",
    "AudioInputError",
    "AudioWindows",
    "Injection",
    "ModelMismatchError",
    "PassSettings",
    "PreparedAudio",
    "build_adapter",
    "compute_audio_windows",
    "gather_windows",
    "load_adapter_weights",
    "official_num_frames",
    "prepare_audio",
]
