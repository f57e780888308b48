from controlplane.scheduling.plugins.free_kv import FreeKVScorer, free_fraction
from tests.controlplane.scheduling.helpers import REQ, view


def test_free_block_fraction():
    cands = [view("a", free_blocks=25), view("b", free_blocks=100), view("c", free_blocks=0)]
    assert FreeKVScorer().score(REQ, cands) == [0.25, 1.0, 0.0]


def test_pending_tokens_take_whole_blocks():
    # 17 pending tokens need 2 blocks of 16
    assert free_fraction(view("a", free_blocks=50, pending_tokens=17)) == 0.48


def test_pending_never_below_zero():
    assert free_fraction(view("a", free_blocks=1, pending_tokens=1000)) == 0.0


def test_no_blocks_scores_zero():
    assert free_fraction(view("a", free_blocks=0, total_blocks=0)) == 0.0


def test_scorer_agrees_with_free_fraction():
    cands = [
        view("a", free_blocks=50, pending_tokens=17),
        view("b", free_blocks=1, pending_tokens=1000),
        view("c", free_blocks=0, total_blocks=0, pending_tokens=5),
        view("d", free_blocks=120, total_blocks=100),
        view("e", free_blocks=33, total_blocks=64, block_size=8, pending_tokens=8),
    ]
    assert FreeKVScorer().score(REQ, cands) == [free_fraction(c) for c in cands] == [0.48, 0.0, 0.0, 1.0, 0.5]
