"""Helpers of `benchmarks/engine_throughput.py`: our continuous-batching engine against Hugging Face
`transformers` padded static batches, on the same weights and the same requests.

- `models`: the model pair (ours and its transformers twin with the identical state dict);
- `requests`: the seeded, length-scaled ShareGPT requests;
- `ours`: the closed loop over our engine; `padded`: the transformers baseline;
- `report`: the per-concurrency results, table, JSON and plot.
"""
