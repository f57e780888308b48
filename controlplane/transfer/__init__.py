"""The transfer core: one protocol for moving a request's KV pages from one engine to another.

`core.py` is the pure state machine (events in, actions out), `protocol.py` its vocabulary,
`settings.py` its knobs, `book.py` the in-flight bookkeeping every driver keeps, `endpoint.py` an
engine's side as a driver calls it, and `driver.py` the asyncio driver over real engines (Ray
actors, in-process step loops). The simulator drives the same core in virtual time
(`controlplane/runtime/sim/transfer.py`).
"""
