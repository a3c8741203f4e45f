#include "core/buffer_cache.h"

#include <sys/mman.h>

#include <cstdlib>
#include <map>
#include <unordered_map>
#include <mutex>

namespace cachalot {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kUseMappings = false;
#else
constexpr bool kUseMappings = true;
#endif

constexpr size_t kLarge = size_t{1} << 20;       // from here on: mappings
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kCacheCap = size_t{4} << 30;    // released bytes kept at most

size_t mapped_size(size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage; }

struct Cache {
  std::mutex mutex;
  std::multimap<size_t, void*> free;        // mapped size -> address
  std::unordered_map<void*, size_t> live;   // handed out: address -> mapped size
  size_t bytes = 0;
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: buffers may be released during exit
  return *c;
}

void* map_aligned(size_t size) {
  // Over-allocate by one huge page and trim, so the buffer starts on a 2 MiB boundary.
  const size_t total = size + kHugePage;
  void* raw = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const auto base = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (base + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > base) munmap(raw, aligned - base);
  const uintptr_t end = base + total, used_end = aligned + size;
  if (end > used_end) munmap(reinterpret_cast<void*>(used_end), end - used_end);
  madvise(reinterpret_cast<void*>(aligned), size, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(aligned);
}

}  // namespace

void* allocate_buffer(size_t bytes) {
  if (!kUseMappings || bytes < kLarge) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    return std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  }
  const size_t size = mapped_size(bytes);
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  // The smallest cached buffer that fits and wastes at most half of itself.
  auto it = c.free.lower_bound(size);
  if (it != c.free.end() && it->first <= 2 * size) {
    void* p = it->second;
    c.bytes -= it->first;
    c.live.emplace(p, it->first);
    c.free.erase(it);
    return p;
  }
  void* p = map_aligned(size);
  if (p != nullptr) c.live.emplace(p, size);
  return p;
}

void release_buffer(void* p, size_t bytes) {
  if (p == nullptr) return;
  if (!kUseMappings || bytes < kLarge) {
    std::free(p);
    return;
  }
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  // A reused buffer may be larger than this request: its mapped size is what counts.
  const auto live = c.live.find(p);
  if (live == c.live.end()) std::abort();  // not ours: a double free or a foreign pointer
  const size_t size = live->second;
  c.live.erase(live);
  if (c.bytes + size > kCacheCap) {
    munmap(p, size);
    return;
  }
  c.free.emplace(size, p);
  c.bytes += size;
}

void drop_buffer_cache() {
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  for (auto& [size, p] : c.free) munmap(p, size);
  c.free.clear();
  c.bytes = 0;
}

size_t cached_buffer_bytes() {
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  return c.bytes;
}

}  // namespace cachalot
