"""Chained, content-addressed keys of full KV blocks.

    h_0 = ROOT
    h_i = SHA-256( h_{i-1} || len(salt) || salt || token ids of block i || extra )

Token ids are encoded as little-endian unsigned 32-bit integers, the salt as UTF-8 behind a 4-byte
little-endian length, `extra` (e.g. multimodal content hashes or a LoRA name) as UTF-8 behind its
own 4-byte length. Only full blocks have keys. The result depends on nothing but these bytes, so it
is identical across processes, machines and Python versions (the tests pin a known-answer vector).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

BlockHash = bytes

ROOT: BlockHash = b"\x00" * 32


def _len_prefixed(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<I", len(raw)) + raw


def hash_block(
    parent: BlockHash, token_ids: Sequence[int], salt: str = "", extra: str = ""
) -> BlockHash:
    """Key of one full block whose predecessor's key is `parent` (ROOT for the first block)."""
    h = hashlib.sha256(parent)
    h.update(_len_prefixed(salt))
    h.update(struct.pack(f"<{len(token_ids)}I", *token_ids))
    h.update(_len_prefixed(extra))
    return h.digest()


def hash_blocks(
    token_ids: Sequence[int],
    block_size: int,
    salt: str = "",
    parent: BlockHash = ROOT,
    extra: str = "",
) -> list[BlockHash]:
    """Keys of every full block of `token_ids`, chained from `parent`; a partial tail has none."""
    keys: list[BlockHash] = []
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        parent = hash_block(parent, token_ids[start : start + block_size], salt, extra)
        keys.append(parent)
    return keys
