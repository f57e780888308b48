"""Flotilla benchmarks: load generator, trace loaders, engine and serving benchmarks."""
