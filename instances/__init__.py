"""Flotilla engine instances: the paged-KV torch engine and its Ray actor."""
