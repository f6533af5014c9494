"""The pack's socket types and node category."""

from comfy_api.latest import io

CATEGORY = "FantasyTalking"

# A ModelPatcher holding the adapter (its own socket type, so it cannot be wired into core MODEL_PATCH inputs).
FantasyTalkingModel = io.Custom("FANTASYTALKING_MODEL")
# fantasy_core.audio.embeds.AudioEmbeds: raw wav2vec2 features of the whole track, frame count, official windows.
FantasyTalkingAudio = io.Custom("FANTASYTALKING_AUDIO")
# fantasy_core.identity.face.DetectedFace per image, with the source image: the portrait's main face and its 5 keypoints.
FantasyTalkingFace = io.Custom("FANTASYTALKING_FACE")
# fantasy_core.identity.embeds.FaceEmbedding: the L2-normalised ArcFace embedding the identity module consumes.
FantasyTalkingIdentity = io.Custom("FANTASYTALKING_IDENTITY")
# fantasy_core.motion.intensity.MotionIntensity: ω_l (expression) and ω_b (body), each in [0, 1].
FantasyTalkingMotion = io.Custom("FANTASYTALKING_MOTION")
