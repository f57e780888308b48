"""Profiling the real engine: step times over a grid of batch shapes (`flotilla profile`)."""
