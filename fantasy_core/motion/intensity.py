"""What motion intensity means: ω_l (facial expression) and ω_b (body motion), each in [0, 1], and the calibration
that maps a measured raw motion to ω.

Calibration is the dataset's empirical distribution: a list of (percentile, raw value) points, interpolated linearly.
So ω = 0.5 is the median clip of the data the motion module was trained on (the paper's neutral value), 0.1 a clip
calmer than 90% of it. The trainer's data preparation computes the points from its dataset and stores them with the
motion weights, so a measured ω means the same at inference as in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

NEUTRAL = 0.5
# Paper Table 2: subtle (0.1, 0.1), natural (0.5, 0.5), intense (1.0, 1.0)
PRESETS = {"subtle": (0.1, 0.1), "natural": (0.5, 0.5), "intense": (1.0, 1.0)}
MEANING = "0 = still, 0.5 = neutral (the median training clip), 1 = the most animated"
CUSTOM = "custom"  # the preset that means "the two sliders"


@dataclass(frozen=True)
class MotionIntensity:
    lip: float = NEUTRAL  # ω_l: facial expression (MediaPipe face mesh)
    body: float = NEUTRAL  # ω_b: body motion (body joints)

    def __post_init__(self):
        for name, value in (("omega_lip", self.lip), ("omega_body", self.body)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number from 0 to 1 ({MEANING}); got {value!r}.")
        object.__setattr__(self, "lip", float(self.lip))
        object.__setattr__(self, "body", float(self.body))

    def describe(self) -> str:
        return f"ω_l {self.lip:.2f}, ω_b {self.body:.2f}"


class CalibrationError(ValueError):
    """A calibration table is unusable."""


def _curve(name: str, points) -> tuple[tuple[float, float], ...]:
    try:
        table = tuple((float(percent), float(value)) for percent, value in points)
    except (TypeError, ValueError) as error:
        raise CalibrationError(f"calibration '{name}' must be a list of [percentile, raw value] pairs ({error}).") from None
    if len(table) < 2:
        raise CalibrationError(f"calibration '{name}' needs at least two [percentile, raw value] points; got {len(table)}.")
    percents = np.array([p for p, _ in table])
    values = np.array([v for _, v in table])
    if not (np.isfinite(percents).all() and np.isfinite(values).all()):
        raise CalibrationError(f"calibration '{name}' holds a non-finite number: {list(table)}.")
    if percents[0] != 0 or percents[-1] != 100 or (np.diff(percents) <= 0).any():
        raise CalibrationError(f"calibration '{name}': percentiles must rise strictly from 0 to 100; got {percents.tolist()}.")
    if (values < 0).any() or (np.diff(values) < 0).any() or values[-1] <= values[0]:
        raise CalibrationError(f"calibration '{name}': raw values must be >= 0, never fall, and span a range; got {values.tolist()}.")
    return table


# Until a dataset has been measured (the trainer's data preparation does it), ω is read against these log-spaced
# points: raw expression variance in units of the face's size squared, body variance in shoulder widths squared,
# over 2 s windows. 0% sits at the trackers' own jitter when the picture moves (a moving head reads ω_l ≈ 0.05), 50%
# at a mouth that opens by about a tenth of the face's height (see the README).
DEFAULT_LIP_POINTS = ((0, 1e-4), (10, 3e-4), (50, 1.5e-3), (90, 6e-3), (100, 1.5e-2))
DEFAULT_BODY_POINTS = ((0, 5e-4), (10, 1.5e-3), (50, 6e-3), (90, 2.5e-2), (100, 6e-2))
BODY_LANDMARKS = ("mediapipe_pose", "dwpose")


@dataclass(frozen=True)
class MotionCalibration:
    lip: tuple[tuple[float, float], ...] = DEFAULT_LIP_POINTS
    body: tuple[tuple[float, float], ...] = DEFAULT_BODY_POINTS
    window_seconds: float = 2.0  # variance is taken over windows of this length (what the percentiles were measured with)
    body_landmarks: str = "mediapipe_pose"  # the body-joint model the body percentiles were measured with
    source: str = field(default="defaults", compare=False)  # where the table came from, for messages

    def __post_init__(self):
        object.__setattr__(self, "lip", _curve("lip", self.lip))
        object.__setattr__(self, "body", _curve("body", self.body))
        if not (isinstance(self.window_seconds, (int, float)) and math.isfinite(self.window_seconds) and self.window_seconds > 0):
            raise CalibrationError(f"calibration 'window_seconds' must be a positive number of seconds; got {self.window_seconds!r}.")
        if self.body_landmarks not in BODY_LANDMARKS:
            raise CalibrationError(f"calibration 'body_landmarks' must be one of {list(BODY_LANDMARKS)}; got {self.body_landmarks!r}.")

    def omega_lip(self, raw: float) -> float:
        return _interpolate(self.lip, raw)

    def omega_body(self, raw: float) -> float:
        return _interpolate(self.body, raw)

    def to_json(self) -> dict:
        return {
            "lip": [list(p) for p in self.lip],
            "body": [list(p) for p in self.body],
            "window_seconds": self.window_seconds,
            "body_landmarks": self.body_landmarks,
        }

    @classmethod
    def from_json(cls, values, source: str) -> MotionCalibration:
        keys = {"lip", "body", "window_seconds", "body_landmarks"}
        if not isinstance(values, dict) or set(values) != keys:
            found = sorted(values) if isinstance(values, dict) else type(values).__name__
            raise CalibrationError(f"the motion calibration holds {found}, expected exactly {sorted(keys)}.")
        return cls(values["lip"], values["body"], values["window_seconds"], values["body_landmarks"], source=source)

    @classmethod
    def from_dataset(cls, lip_raw, body_raw, window_seconds: float, body_landmarks: str, percentiles=range(0, 101, 5)) -> MotionCalibration:
        """The table of a dataset's measured raw values (what the data preparation stores with the weights)."""
        percentiles = [float(p) for p in percentiles]
        lip = np.percentile(np.asarray(lip_raw, dtype=np.float64), percentiles)
        body = np.percentile(np.asarray(body_raw, dtype=np.float64), percentiles)
        return cls(tuple(zip(percentiles, lip)), tuple(zip(percentiles, body)), window_seconds, body_landmarks, source="dataset")


def _interpolate(table, raw: float) -> float:
    if not math.isfinite(raw) or raw < 0:
        raise ValueError(f"a raw motion measurement must be a finite number >= 0; got {raw!r}.")
    percents = np.array([p for p, _ in table]) / 100
    values = np.array([v for _, v in table])
    for i in range(1, len(values)):  # tied values (many equally still clips): the value itself reads as the lowest of
        values[i] = max(values[i], np.nextafter(values[i - 1], np.inf))  # their percentiles, anything above as the highest
    return float(np.interp(raw, values, percents))


def intensity_of(preset: str, omega_lip: float, omega_body: float) -> MotionIntensity:
    """What Motion Intensity's widgets mean: ``custom`` takes the two sliders; a preset takes its pair, and sliders
    moved away from neutral to something else contradict it."""
    if preset == CUSTOM:
        return MotionIntensity(omega_lip, omega_body)
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {[CUSTOM, *PRESETS]}; got {preset!r}.")
    lip, body = PRESETS[preset]
    if (omega_lip, omega_body) not in ((NEUTRAL, NEUTRAL), (lip, body)):
        raise ValueError(
            f"preset '{preset}' sets ω_l = {lip:g} and ω_b = {body:g}, but the sliders say {omega_lip:g} and "
            f"{omega_body:g}. Set preset to '{CUSTOM}' to use the sliders, or put them back to {NEUTRAL:g} to use the preset."
        )
    return MotionIntensity(lip, body)
