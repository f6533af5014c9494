"""The motion modality (paper Sec. 3.4): measuring ω_l and ω_b from a clip, their calibration, and the network that
adds a motion embedding to Wan's time embedding."""
