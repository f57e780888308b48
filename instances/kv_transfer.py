"""KV pages: a request's KV blocks out of one engine's cache and into another's, checksummed.

A *page* is one block of one sequence across every layer: K and V of `block_size` token slots,
`[layers, 2, block_size, kv_heads, head_dim]`. `export_pages` gathers pages from the cache tensors
into one contiguous host buffer in a single pass (`KVPages.data`, a numpy byte array, so Ray's
object store hands it to the destination without a copy) with a CRC-32 per page; `import_pages`
verifies each page's checksum before writing any of them, so a corrupt transfer changes nothing,
and reads the buffer where it lies.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


class CorruptPages(Exception):
    """A page's bytes do not match its checksum (the transfer is refused, nothing written)."""


@dataclass
class KVPages:
    """Pages `first_block .. first_block + len(checksums) - 1` of a request's block table.

    `data` is `[num_pages, page_bytes]` uint8; `dtype` and `page_shape` say how to read a row.
    `num_computed_tokens` is the source sequence's computed count when the pages were read, and
    `source_blocks` the number of blocks holding them (pages past these ones may remain)."""

    request_id: str
    first_block: int
    data: np.ndarray
    checksums: list[int]
    dtype: str
    page_shape: tuple[int, ...]
    num_computed_tokens: int
    source_blocks: int

    @property
    def num_pages(self) -> int:
        return len(self.checksums)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


def checksum(page: np.ndarray) -> int:
    """CRC-32 of one page's bytes."""
    return zlib.crc32(page)


def export_pages(
    kv_caches: Sequence[torch.Tensor], block_ids: Sequence[int], request_id: str, first_block: int,
    num_computed_tokens: int, source_blocks: int,
) -> KVPages:
    """Copy the pages of `block_ids` (cache block numbers; table positions `first_block`, ...) out
    of `kv_caches` (one `[2, num_blocks, block_size, kv_heads, head_dim]` tensor per layer)."""
    cache = kv_caches[0]
    page_shape = (len(kv_caches), 2, *cache.shape[2:])
    if block_ids:
        ids = torch.tensor(list(block_ids), dtype=torch.int64, device=cache.device)
        # one pass: each layer's blocks gathered straight into their place in the page-major buffer
        # ([n, layers, 2, block_size, heads, dim], each page contiguous)
        pages = torch.empty((len(block_ids), *page_shape), dtype=cache.dtype, device=cache.device)
        for layer, c in enumerate(kv_caches):
            torch.index_select(c.transpose(0, 1), 0, ids, out=pages[:, layer])
        data = pages.cpu().view(torch.uint8).reshape(len(block_ids), -1).numpy()
    else:
        data = np.zeros((0, 0), dtype=np.uint8)
    return KVPages(request_id, first_block, data, [checksum(row) for row in data], str(cache.dtype),
                   page_shape, num_computed_tokens, source_blocks)


def import_pages(kv_caches: Sequence[torch.Tensor], block_ids: Sequence[int], pages: KVPages) -> None:
    """Write `pages` into cache blocks `block_ids` (one per page) after verifying every checksum.

    Raises CorruptPages (writing nothing) on a mismatch, ValueError on a shape or count mismatch."""
    if len(block_ids) != pages.num_pages:
        raise ValueError(f"{pages.num_pages} pages for {len(block_ids)} blocks")
    if not block_ids:
        return
    cache = kv_caches[0]
    expected = (len(kv_caches), 2, *cache.shape[2:])
    if tuple(pages.page_shape) != expected or pages.dtype != str(cache.dtype):
        raise ValueError(f"pages of shape {pages.page_shape} ({pages.dtype}) do not fit this cache "
                         f"{expected} ({cache.dtype}): the engines serve different models")
    for i, (row, crc) in enumerate(zip(pages.data, pages.checksums, strict=True)):
        if checksum(row) != crc:
            raise CorruptPages(f"request {pages.request_id}: page {pages.first_block + i} fails its checksum")
    with warnings.catch_warnings():  # Ray hands read-only buffers: torch says so, and we only read them
        warnings.filterwarnings("ignore", message="The given (NumPy array|buffer) is not writable")
        raw = torch.frombuffer(np.ascontiguousarray(pages.data), dtype=torch.uint8)
    tensor = raw.view(cache.dtype).reshape(pages.num_pages, *expected).to(cache.device)
    ids = torch.tensor(list(block_ids), dtype=torch.int64, device=cache.device)
    for layer, c in enumerate(kv_caches):
        c.index_copy_(1, ids, tensor[:, layer].transpose(0, 1))
