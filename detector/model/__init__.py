"""The session risk model: forest, explanations, calibration, labels and the model registry."""
