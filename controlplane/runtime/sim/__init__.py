"""The simulation runtime: the real engine scheduler and scheduling framework in virtual time.

The package re-exports nothing, so that importing `controlplane.runtime.sim.command` (the CLI's
parser) does not import the engine and torch: import from the modules (`config.SimConfig`,
`loop.Simulation`, `workload.SimWorkload`, `results.results`, ...).
"""
