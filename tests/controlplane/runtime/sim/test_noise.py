"""Step noise measured from step traces and replayed by simulated instances, and per-request
dispatch delays drawn from samples. Timelines computed by hand with test_simulation's latency model
(prefill 0.1 s + 1 ms per token; decode 10 ms + 1 ms per sequence)."""

from __future__ import annotations

import random

import pytest

from controlplane.runtime.sim.config import SimConfig
from controlplane.runtime.sim.loop import Simulation
from controlplane.runtime.sim.results import results
from controlplane.runtime.sim.workload import SimWorkload
from controlplane.runtime.sim.host import HostModel
from controlplane.runtime.sim.noise import IDLE_GAP_S, NoisePlayer, StepNoise
from controlplane.workload import TraceRequest
from instances.step_trace import StepRecord
from tests.controlplane.runtime.sim.test_simulation import ENGINE, LATENCY, ROUND_ROBIN, azure_slice


def prefill(end_s: float, seconds: float, tokens: int = 100) -> StepRecord:
    """A whole prompt of `tokens` from position 0 (LATENCY: 0.1 + 0.001 * tokens)."""
    return StepRecord(end_s, seconds, tokens, tokens * tokens, 1, 0, 0)


def decode(end_s: float, seconds: float, batch: int = 1) -> StepRecord:
    """`batch` decodes (LATENCY: 0.01 + 0.001 * batch)."""
    return StepRecord(end_s, seconds, 0, 0, 0, batch, batch * 50)


def approx_seq(pairs):
    return [pytest.approx(p, abs=1e-12) for p in pairs]


# ---- StepNoise.measure ---------------------------------------------------------------------------


def test_measure_stretches_and_gaps_by_hand() -> None:
    trace = [
        prefill(1.0, 0.4),  # model 0.2: stretch 2; the first step gets the median busy gap
        decode(1.025, 0.022),  # model 0.011: stretch 2; starts 1.003, gap 0.003
        decode(1.040, 0.011),  # stretch 1; starts 1.029, gap 0.004
        decode(2.0, 0.024, batch=2),  # model 0.012: stretch 2; starts 1.976, gap 0.936: idle -> median
        decode(2.030, 0.012, batch=2),  # stretch 1; starts 2.018, gap 0.018: busy (< 0.02)
    ]
    noise = StepNoise.measure([trace], LATENCY)
    # busy gaps 0.003, 0.004, 0.018: median 0.004
    assert len(noise.sequences) == 1
    assert list(noise.sequences[0]) == approx_seq([(2.0, 0.004), (2.0, 0.003), (1.0, 0.004), (2.0, 0.004),
                                                   (1.0, 0.018)])


def test_measure_median_of_an_even_number_of_busy_gaps() -> None:
    trace = [
        prefill(0.5, 0.2),  # stretch 1
        decode(0.513, 0.011),  # gap 0.002
        decode(0.6, 0.033),  # stretch 3; starts 0.567, gap 0.054: idle
        decode(0.617, 0.011),  # gap 0.006
    ]
    (seq,) = StepNoise.measure([trace], LATENCY).sequences
    # median of 0.002 and 0.006 is 0.004, given to the first step and the idle one
    assert list(seq) == approx_seq([(1.0, 0.004), (1.0, 0.002), (3.0, 0.004), (1.0, 0.006)])


def test_a_gap_of_exactly_idle_gap_s_is_idle_and_a_negative_gap_is_replaced() -> None:
    assert IDLE_GAP_S == 0.02
    trace = [
        prefill(0.0, 0.2),
        decode(0.031, 0.011),  # starts at 0.02: a gap of exactly IDLE_GAP_S, so idle
        decode(0.045, 0.011),  # starts 0.034: gap 0.003
        decode(0.05, 0.011),  # starts 0.039, before the previous end (a clock step back): replaced
    ]
    assert 0.031 - 0.011 - 0.0 == IDLE_GAP_S  # exactly, in floats
    (seq,) = StepNoise.measure([trace], LATENCY).sequences
    assert list(seq) == approx_seq([(1.0, 0.003), (1.0, 0.003), (1.0, 0.003), (1.0, 0.003)])


def test_measure_without_busy_gaps_uses_zero_and_skips_short_traces() -> None:
    idle = [prefill(5.0, 0.2), decode(6.0, 0.0165)]  # gap 0.9835: idle; stretch 1.5
    single = [prefill(1.0, 0.3)]
    noise = StepNoise.measure([single, idle, [], single], LATENCY)
    assert len(noise.sequences) == 1
    assert list(noise.sequences[0]) == approx_seq([(1.0, 0.0), (1.5, 0.0)])


def test_measure_with_nothing_left_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one non-empty sequence"):
        StepNoise.measure([[prefill(1.0, 0.2)], []], LATENCY)
    with pytest.raises(ValueError, match="at least one non-empty sequence"):
        StepNoise.measure([], LATENCY)


@pytest.mark.parametrize("sequences", [(), ((),), (((1.0, 0.0),), ())])
def test_step_noise_rejects_empty_sequences(sequences) -> None:
    with pytest.raises(ValueError, match="at least one non-empty sequence"):
        StepNoise(sequences)


@pytest.mark.parametrize("pair", [(0.0, 0.0), (-1.0, 0.0), (float("nan"), 0.0), (float("inf"), 0.0),
                                  (1.0, -0.001), (1.0, float("nan")), (1.0, float("inf"))])
def test_step_noise_rejects_bad_pairs(pair) -> None:
    with pytest.raises(ValueError, match="stretch > 0 and gap >= 0"):
        StepNoise((((1.0, 0.0), pair),))


def test_measure_rejects_a_zero_time_step() -> None:
    with pytest.raises(ValueError, match="stretch > 0"):
        StepNoise.measure([[prefill(1.0, 0.2), decode(1.1, 0.0)]], LATENCY)


def test_describe_and_means() -> None:
    noise = StepNoise((((2.0, 0.001), (1.0, 0.003)), ((3.0, 0.002),)))
    assert noise.mean_stretch() == pytest.approx(2.0)
    assert noise.mean_gap() == pytest.approx(0.002)
    assert noise.describe() == {"sequences": 2, "steps": 3, "mean_stretch": pytest.approx(2.0),
                                "mean_gap_s": pytest.approx(0.002)}


# ---- NoisePlayer ---------------------------------------------------------------------------------


def test_player_hands_out_pairs_in_order_from_its_offset_and_wraps() -> None:
    seq = ((1.0, 0.1), (2.0, 0.2), (3.0, 0.3))
    player = NoisePlayer(seq, 1)
    assert [player.next() for _ in range(7)] == [seq[1], seq[2], seq[0], seq[1], seq[2], seq[0], seq[1]]
    assert [NoisePlayer(seq, 0).next() for _ in range(2)] == [seq[0], seq[0]]  # a fresh player each time
    single = NoisePlayer(((5.0, 0.5),), 0)
    assert [single.next() for _ in range(3)] == [(5.0, 0.5)] * 3


def test_players_replay_sequence_k_mod_n_from_seeded_offsets() -> None:
    a = ((1.0, 0.0), (2.0, 0.0), (3.0, 0.0))
    b = ((4.0, 0.0), (5.0, 0.0))
    noise = StepNoise((a, b))
    players = noise.players(3, seed=5)
    rng = random.Random("step-noise:5")
    expected = [(a, rng.randrange(3)), (b, rng.randrange(2)), (a, rng.randrange(3))]
    assert [(p.sequence, p.index) for p in players] == expected
    again = noise.players(3, seed=5)
    assert [p.index for p in again] == [p.index for p in players]


# ---- the simulator with noise --------------------------------------------------------------------


def simulate(requests, instances=1, seed=0, **config):
    cfg = SimConfig(instances, "p", ROUND_ROBIN, ENGINE, LATENCY, seed=seed, **config)
    run = Simulation(cfg, SimWorkload(requests)).run()
    return cfg, run


def chunks(run):
    return [list(t.chunk_s) for t in run.recorder.timelines()]


def test_one_request_with_a_single_pair_of_noise() -> None:
    _, run = simulate([TraceRequest(0.0, 100, 3)], noise=StepNoise((((2.0, 0.001),),)))
    # prefill 0.2 * 2 + 0.001 = 0.401, then two decodes of 0.011 * 2 + 0.001 = 0.023
    assert chunks(run) == [pytest.approx([0.401, 0.424, 0.447])]
    assert run.instances[0].busy_s == pytest.approx(0.447)
    assert (run.steps, run.events) == (3, 4)  # every step an event (and the arrival)


def test_noise_adds_to_the_step_overheads() -> None:
    _, run = simulate([TraceRequest(0.0, 100, 3)], noise=StepNoise((((2.0, 0.001),),)), step_overhead_s=0.004,
                      step_overhead_per_seq_s=0.002)
    # each step: model * 2 + 0.001 + 0.004 + 0.002 (one sequence): 0.407, then 0.029 twice
    assert chunks(run) == [pytest.approx([0.407, 0.436, 0.465])]


@pytest.mark.parametrize(("seed", "offset", "expected"), [
    (0, 0, [0.2, 0.233, 0.254]),  # pairs 0, 1, 2: 0.2, 0.011 * 3, 0.011 + 0.01
    (4, 1, [0.6, 0.621, 0.632]),  # pairs 1, 2, 0: 0.2 * 3, 0.011 + 0.01, 0.011
    (2, 2, [0.21, 0.221, 0.254]),  # pairs 2, 0, 1: 0.2 + 0.01, 0.011, 0.011 * 3
])
def test_a_sequence_is_replayed_in_order_from_the_seeded_offset(seed, offset, expected) -> None:
    seq = ((1.0, 0.0), (3.0, 0.0), (1.0, 0.01))
    assert random.Random(f"step-noise:{seed}").randrange(3) == offset
    _, run = simulate([TraceRequest(0.0, 100, 3)], seed=seed, noise=StepNoise((seq,)))
    assert chunks(run) == [pytest.approx(expected)]


def test_neutral_noise_computes_what_decode_runs_do_with_one_event_per_step() -> None:
    reqs = azure_slice(200)
    cfg_plain, plain = simulate(reqs, instances=2)
    cfg_noise, noisy = simulate(reqs, instances=2, noise=StepNoise((((1.0, 0.0),),)))
    assert chunks(noisy) == chunks(plain)  # x 1.0 + 0.0: the same floats
    assert [i.busy_s for i in noisy.instances] == [i.busy_s for i in plain.instances]
    assert noisy.steps == plain.steps
    assert noisy.events == noisy.steps + len(reqs)  # no decode runs: one event per step
    assert plain.events < noisy.events  # decode runs
    r_plain, r_noise = results(cfg_plain, plain), results(cfg_noise, noisy)
    assert r_noise["step_noise"] == {"sequences": 1, "steps": 1, "mean_stretch": 1.0, "mean_gap_s": 0.0}
    assert r_plain["step_noise"] is None
    assert {**r_noise, "events": 0, "step_noise": None} == {**r_plain, "events": 0}


def test_a_long_decode_is_one_run_without_noise_and_one_event_per_step_with_it() -> None:
    reqs = [TraceRequest(0.0, 100, 20)]
    _, plain = simulate(reqs)
    _, noisy = simulate(reqs, noise=StepNoise((((1.0, 0.0),),)))
    assert chunks(noisy) == chunks(plain)
    assert plain.steps == noisy.steps == 20
    assert noisy.events == 21  # the arrival and 20 step ends
    assert plain.events < 10  # the arrival, the prefill, the decode run's few priced chunks


def test_a_host_also_steps_one_event_per_step() -> None:
    reqs = azure_slice(100)
    _, run = simulate(reqs, instances=2, host=HostModel(4.0))
    assert run.events == run.steps + len(reqs)


NOISE = StepNoise((((1.0, 0.0), (2.5, 0.004), (1.2, 0.001), (3.0, 0.0)), ((1.1, 0.002), (1.0, 0.0), (1.8, 0.003))))
DELAYS = (0.0, 0.01, 0.05, 0.002)


def timelines(run):
    return [(t.send_s, list(t.chunk_s), t.output_tokens, t.error) for t in run.recorder.timelines()]


def test_same_seed_same_timelines_and_the_seed_matters() -> None:
    reqs = azure_slice(200)
    config = {"instances": 3, "noise": NOISE, "dispatch_delays_s": DELAYS}
    _, first = simulate(reqs, seed=7, **config)
    _, again = simulate(reqs, seed=7, **config)
    _, other = simulate(reqs, seed=8, **config)
    assert timelines(first) == timelines(again)
    assert timelines(first) != timelines(other)
    assert sorted(t[0] for t in timelines(other)) == [r.arrival_s for r in reqs]  # same requests
    assert first.events == first.steps + len(reqs)
    # round robin draws nothing: the seed acts through the noise offsets and the delays alone
    _, noise_only = simulate(reqs, seed=8, instances=3, noise=NOISE)
    _, noise_only_7 = simulate(reqs, seed=7, instances=3, noise=NOISE)
    assert timelines(noise_only) != timelines(noise_only_7)


# ---- dispatch delays drawn from samples ----------------------------------------------------------


def test_a_single_sample_is_the_fixed_delay() -> None:
    reqs = azure_slice(200)
    _, fixed = simulate(reqs, instances=2, dispatch_delay_s=0.05)
    _, drawn = simulate(reqs, instances=2, dispatch_delays_s=(0.05,))
    assert timelines(drawn) == timelines(fixed)
    assert [i.busy_s for i in drawn.instances] == [i.busy_s for i in fixed.instances]
    assert drawn.events == fixed.events


def test_fixed_and_drawn_delays_are_exclusive_and_samples_must_be_valid() -> None:
    with pytest.raises(ValueError, match="not both"):
        SimConfig(1, "p", ROUND_ROBIN, ENGINE, LATENCY, dispatch_delay_s=0.05, dispatch_delays_s=(0.05,))
    for bad in ((0.01, -0.001), (float("nan"),), (0.0, float("inf"))):
        with pytest.raises(ValueError, match="every dispatch_delays_s sample"):
            SimConfig(1, "p", ROUND_ROBIN, ENGINE, LATENCY, dispatch_delays_s=bad)
    SimConfig(1, "p", ROUND_ROBIN, ENGINE, LATENCY, dispatch_delay_s=0.0, dispatch_delays_s=(0.0, 0.1))


# Requests A (arrives 0.0, 100-token prompt) and B (0.001, 50 tokens), two tokens each, one instance;
# each gets a delay of 0.0 or 0.3. Token times per draw (A's delay, B's delay), by hand:
DRAWN = {
    # A placed at 0: prefill to 0.2; B placed at 0.001 joins step 2 (A decodes, B prefills:
    # 0.1 + 0.05 + 0.011 = 0.161) to 0.361; B decodes alone to 0.372
    (0.0, 0.0): ([0.2, 0.361], [0.361, 0.372]),
    # B placed first (0.001): prefill 0.15 to 0.151, decode to 0.162; A placed at 0.3: 0.5, 0.511
    (0.3, 0.0): ([0.5, 0.511], [0.151, 0.162]),
    # A alone: 0.2, 0.211; B placed at 0.301: prefill to 0.451, decode to 0.462
    (0.0, 0.3): ([0.2, 0.211], [0.451, 0.462]),
    # A placed at 0.3: prefill to 0.5; B placed at 0.301 joins step 2 (to 0.661), decodes to 0.672
    (0.3, 0.3): ([0.5, 0.661], [0.661, 0.672]),
}


@pytest.mark.parametrize("seed", [0, 1, 2, 9])
def test_placement_order_follows_arrival_plus_drawn_delay(seed) -> None:
    rng = random.Random(f"dispatch-delay:{seed}")
    draw = (rng.choice((0.0, 0.3)), rng.choice((0.0, 0.3)))  # once per request, in arrival order
    assert draw == {0: (0.3, 0.0), 1: (0.0, 0.3), 2: (0.0, 0.0), 9: (0.3, 0.3)}[seed]  # all four cases
    _, run = simulate([TraceRequest(0.0, 100, 2), TraceRequest(0.001, 50, 2)], seed=seed,
                      dispatch_delays_s=(0.0, 0.3))
    a_chunks, b_chunks = DRAWN[draw]
    by_send = {t.send_s: t for t in run.recorder.timelines()}
    a, b = by_send[0.0], by_send[0.001]
    assert list(a.chunk_s) == pytest.approx(a_chunks)
    assert list(b.chunk_s) == pytest.approx(b_chunks)
    assert a.ttft_s == pytest.approx(a_chunks[0])  # counted from the arrival, not the placement
    assert b.ttft_s == pytest.approx(b_chunks[0] - 0.001)
    # timelines come in placement order: B first only when it was placed first
    order = [t.send_s for t in run.recorder.timelines()]
    assert order == ([0.001, 0.0] if draw == (0.3, 0.0) else [0.0, 0.001])


def test_drawn_delays_are_reported_as_no_fixed_delay() -> None:
    cfg, run = simulate([TraceRequest(0.0, 10, 2)], dispatch_delays_s=(0.0, 0.3))
    r = results(cfg, run)
    assert r["serving_overheads"]["dispatch_delay_s"] == 0.0
    assert r["step_noise"] is None
