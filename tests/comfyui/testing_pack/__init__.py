"""Test-only nodes standing in for UMT5-XXL text encoding and ViT-H CLIP-vision encoding, whose core loaders build
fixed full-size architectures that cannot be made tiny. Everything else in the test workflows is real."""

import torch


class FantasyTalkingTestConditioning:
    """CONDITIONING shaped like CLIPTextEncode with umt5-xxl: [1, 512, 4096] token embeddings."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "_for_testing"

    def make(self, seed):
        gen = torch.Generator().manual_seed(seed)
        return ([[torch.randn(1, 512, 4096, generator=gen) * 0.5, {}]],)


class FantasyTalkingTestClipVisionOutput:
    """CLIP_VISION_OUTPUT shaped like CLIPVisionEncode with clip_vision_h: penultimate states [1, 257, 1280]."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    RETURN_TYPES = ("CLIP_VISION_OUTPUT",)
    FUNCTION = "make"
    CATEGORY = "_for_testing"

    def make(self, seed):
        import comfy.clip_vision

        gen = torch.Generator().manual_seed(seed)
        output = comfy.clip_vision.Output()
        output.penultimate_hidden_states = torch.randn(1, 257, 1280, generator=gen) * 0.5
        output.last_hidden_state = output.penultimate_hidden_states
        output.image_embeds = torch.randn(1, 1024, generator=gen)
        return (output,)


NODE_CLASS_MAPPINGS = {
    "FantasyTalkingTestConditioning": FantasyTalkingTestConditioning,
    "FantasyTalkingTestClipVisionOutput": FantasyTalkingTestClipVisionOutput,
}
