#include "ep/transport.h"

#include <cstring>
#include <vector>

#include "core/error.h"

namespace cachalot::ep {

void Transport::all_gather(std::span<const std::byte> mine, std::span<std::byte> out, std::chrono::milliseconds timeout) {
  // This round's waits (sending included) get `timeout`; the transport's own comes back after.
  struct Restore {
    Transport& t;
    std::chrono::milliseconds saved;
    ~Restore() { t.set_timeout(saved); }
  } restore{*this, options().timeout};
  set_timeout(timeout);
  const size_t n = mine.size(), world = static_cast<size_t>(world_size());
  CACHALOT_CHECK_ARG(n <= options().control_bytes, "ep all_gather: {} bytes per rank, the control slot holds {}", n,
                     options().control_bytes);
  CACHALOT_CHECK_ARG(out.size() == n * world, "ep all_gather: output of {} bytes, need {}", out.size(), n * world);
  for (int dst = 0; dst < world_size(); ++dst) {
    std::span<std::byte> w = send_window(kControlSlot, dst, static_cast<size_t>(rank()) * n, n);
    if (n > 0) std::memcpy(w.data(), mine.data(), n);
  }
  std::vector<size_t> offset(world), max(world, n);
  for (size_t r = 0; r < world; ++r) offset[r] = r * n;
  post(kControlSlot, offset, max);
  wait(kControlSlot);
  for (int src = 0; src < world_size(); ++src) {
    const std::span<const std::byte> m = received(kControlSlot, src);
    CACHALOT_ASSERT(m.size() == n);
    if (n > 0) std::memcpy(out.data() + static_cast<size_t>(src) * n, m.data(), n);
  }
}

void Transport::barrier() {
  std::byte none[1] = {};
  std::vector<std::byte> all(static_cast<size_t>(world_size()));
  all_gather(none, all);
}

}  // namespace cachalot::ep
