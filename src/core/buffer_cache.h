// Memory for large tensors (>= 1 MiB): 2 MiB-aligned anonymous mappings with transparent huge
// pages requested, and a cache of released ones. A forward pass allocates the same activation
// sizes step after step; handing back a fresh mapping each time would make the kernel zero and
// fault in every page again (on this VM a page fault costs more than reading the page), so
// released buffers are kept (up to a cap) and reused for requests of a similar size.
// Smaller tensors use aligned_alloc; under AddressSanitizer everything does (ASan cannot see
// overruns inside our own mappings).
#pragma once

#include <cstddef>

namespace cachalot {

// Returns memory for `bytes` (64-byte aligned at least), or null when the system refuses.
void* allocate_buffer(size_t bytes);
// Gives back memory from allocate_buffer(bytes) (the same size).
void release_buffer(void* p, size_t bytes);
// Unmaps every cached buffer (tests; a process that wants its memory back).
void drop_buffer_cache();
// Bytes held in the cache now.
size_t cached_buffer_bytes();

}  // namespace cachalot
