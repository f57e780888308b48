"""Block keys are chained, deterministic, and pinned by a published known-answer vector."""

import hashlib
import struct
import subprocess
import sys

from kvstore.block_keys import ROOT, hash_block, hash_blocks

# Known-answer vector: tokens 0..9, block size 4 -> two full blocks, the partial tail has no key.
KAV_TOKENS = list(range(10))
KAV = [
    "5370a0c8b40794aae62ea77a6ba53f0e8c3cf19141356c260b233dce5175c966",
    "ea8e63d67533a71b150028a832bb2aa98ce4ec2fda4d450f0515f1495469250d",
]
KAV_SALTED_FIRST = "2332313ae93b0553359db8835060bf3fa3a937e319dbb9884f38cca29bf8c444"
KAV_EXTRA = "30a38cdf12c030590d656f72f54adc38a63c58f3a297c01c38c5de229b2ad286"


def test_known_answer_vector():
    assert [k.hex() for k in hash_blocks(KAV_TOKENS, 4)] == KAV
    assert hash_blocks(KAV_TOKENS, 4, salt="tenant-a")[0].hex() == KAV_SALTED_FIRST
    assert hash_block(ROOT, [1, 2, 3, 4], extra="lora:x").hex() == KAV_EXTRA


def test_encoding_is_the_documented_one():
    raw = ROOT + struct.pack("<I", 0) + struct.pack("<4I", 0, 1, 2, 3) + struct.pack("<I", 0)
    assert hashlib.sha256(raw).hexdigest() == KAV[0]


def test_chaining_depends_on_every_earlier_block():
    a = hash_blocks([1, 2, 3, 4, 5, 6, 7, 8], 4)
    b = hash_blocks([9, 2, 3, 4, 5, 6, 7, 8], 4)
    assert a[0] != b[0] and a[1] != b[1]
    assert hash_blocks([1, 2, 3, 4, 5, 6, 7, 8], 4, parent=a[0])[0] != a[1]
    assert hash_block(a[0], [5, 6, 7, 8]) == a[1]


def test_same_keys_in_another_process():
    code = "from kvstore.block_keys import hash_blocks; print(hash_blocks(list(range(10)), 4)[1].hex())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == KAV[1]
