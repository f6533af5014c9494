"""The pack's socket types and node category."""

from comfy_api.latest import io

CATEGORY = "FantasyTalking"

# A ModelPatcher holding the adapter (its own socket type, so it cannot be wired into core MODEL_PATCH inputs).
FantasyTalkingModel = io.Custom("FANTASYTALKING_MODEL")
# fantasy_core.audio.embeds.AudioEmbeds: raw wav2vec2 features of the whole track, frame count, official windows.
FantasyTalkingAudio = io.Custom("FANTASYTALKING_AUDIO")
