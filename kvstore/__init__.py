"""Flotilla KV cache store: block keys, tiers and the global block index."""
