"""The paged KV block pool: allocation, reference counts, prefix reuse and LRU eviction.

Mechanism only: the scheduler decides who gets blocks, this module keeps the books.

- Blocks are numbered 0 .. num_blocks - 1. A block is *in use* while its reference count is > 0.
- A full block of a computed sequence gets its chained hash (`kvstore.block_keys`) registered in the
  prefix cache. When its last user frees it, it stays cached but joins the *free queue*; allocation
  takes blocks from the head of that queue and evicts their cache entry at that moment.
- Freed blocks are appended to the tail in reverse order of their position in the sequence, so a
  sequence's last blocks (least likely to be shared) are evicted before its first ones, and blocks
  freed long ago before recent ones (LRU).
- A prefix-cache hit on a free cached block takes it out of the free queue and re-references it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence as Seq

from instances.engine.sequence import Sequence
from kvstore.block_keys import BlockHash


class BlockManager:
    """Books of one engine's KV block pool. Not thread-safe; owned by the engine's scheduler."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks and block_size must be >= 1 (got {num_blocks}, {block_size})")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        self.block_hash: list[BlockHash | None] = [None] * num_blocks
        self.cached: dict[BlockHash, int] = {}
        self.free_queue: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))

    @property
    def num_free_blocks(self) -> int:
        """Blocks that can be allocated now (free, cached or not)."""
        return len(self.free_queue)

    def find_cached_prefix(self, seq: Sequence) -> list[int]:
        """Block ids of the longest cached prefix of `seq`'s full blocks.

        At least one token is always left to compute (the last token's logits are needed), so a
        prompt whose blocks are all cached reuses all but its last block. Mutates nothing.
        """
        if not self.enable_prefix_caching:
            return []
        seq.update_block_hashes(self.block_size)
        max_blocks = (seq.num_tokens - 1) // self.block_size
        hits: list[int] = []
        for h in seq.block_hashes[:max_blocks]:
            block = self.cached.get(h)
            if block is None:
                break
            hits.append(block)
        return hits

    def allocate(self, seq: Sequence, num_tokens: int, cached_prefix: Seq[int] = ()) -> bool:
        """Give `seq` blocks to hold `num_tokens` tokens in total, reusing `cached_prefix` first.

        `cached_prefix` (from `find_cached_prefix`) is only allowed while `seq` holds no blocks.
        Returns False, changing nothing, when the free blocks do not suffice.
        """
        if not cached_prefix and num_tokens <= len(seq.block_ids) * self.block_size:
            return True  # the blocks it holds already have room (most steps of a running sequence)
        if cached_prefix and seq.block_ids:
            raise ValueError(f"{seq.request_id}: a cached prefix can only start an empty block table")
        reused_free = sum(1 for b in cached_prefix if self.ref_counts[b] == 0)
        new_blocks = max(0, -(-num_tokens // self.block_size) - len(seq.block_ids) - len(cached_prefix))
        if new_blocks + reused_free > self.num_free_blocks:
            return False
        for b in cached_prefix:
            if self.ref_counts[b] == 0:
                del self.free_queue[b]
            self.ref_counts[b] += 1
            seq.block_ids.append(b)
        pop, refs, held = self.free_queue.popitem, self.ref_counts, seq.block_ids
        caching = self.enable_prefix_caching  # without it no block is ever cached: nothing to evict
        for _ in range(new_blocks):
            b, _ = pop(last=False)
            if caching:
                self._evict(b)
            refs[b] = 1
            held.append(b)
        return True

    def cache_full_blocks(self, seq: Sequence) -> None:
        """Register in the prefix cache every block of `seq` that is full and computed.

        A block that is already registered (it came from the cache, or an earlier call registered
        it) is left alone. A block whose hash another block already holds in the cache stays
        private, and is tried again on every later call: once that other block has been evicted,
        this one is registered.

        Each block is looked at once: `seq.num_offered_blocks` counts the leading blocks that
        earlier calls already offered (a registered block stays registered while `seq` holds it,
        since only blocks nobody holds are evicted), and `seq.private_blocks` lists those among
        them that were left private, the only ones retried. `free` resets both. The result is
        the same as offering every full computed block on every call.
        """
        if not self.enable_prefix_caching:
            return
        n_full = seq.num_computed_tokens // self.block_size
        if n_full <= seq.num_offered_blocks and not seq.private_blocks:
            return
        seq.update_block_hashes(self.block_size)
        hashes, block_ids = seq.block_hashes, seq.block_ids
        if seq.private_blocks:  # rare: retry the blocks left private, in block order
            retry, seq.private_blocks = seq.private_blocks, []
            for i in retry:
                if self.block_hash[block_ids[i]] is None:
                    self._register(seq, i, block_ids[i], hashes[i])
        for i in range(seq.num_offered_blocks, n_full):
            b = block_ids[i]
            if self.block_hash[b] is None:
                self._register(seq, i, b, hashes[i])
        seq.num_offered_blocks = max(seq.num_offered_blocks, n_full)

    def _register(self, seq: Sequence, index: int, block: int, h: BlockHash) -> None:
        """Cache `block` (block `index` of `seq`) under `h`, or note it private if `h` is taken."""
        if h in self.cached:
            seq.private_blocks.append(index)  # an identical block is already cached
        else:
            self.block_hash[block] = h
            self.cached[h] = block

    def free(self, seq: Sequence) -> None:
        """Drop `seq`'s references; blocks nobody uses join the free queue, last block first."""
        for b in reversed(seq.block_ids):
            self.ref_counts[b] -= 1
            if self.ref_counts[b] < 0:
                raise AssertionError(f"block {b} freed more often than allocated")
            if self.ref_counts[b] == 0:
                self.free_queue[b] = None
        seq.block_ids = []
        seq.num_offered_blocks = 0
        if seq.private_blocks:
            seq.private_blocks = []

    def _evict(self, block: int) -> None:
        h = self.block_hash[block]
        if h is not None:
            self.block_hash[block] = None
            if self.cached.get(h) == block:
                del self.cached[h]
