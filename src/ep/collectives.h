// Byte collectives over a Buffer's data slots: the control traffic of an EP group that does not
// fit the control slot (a forward's plan that rank 0 broadcasts, the results each rank gathers
// back to it). The sizes are all-gathered first (control slot); the bytes then move in as many
// rounds as the largest message needs, each carrying at most Buffer::max_message_bytes() per
// source, so any size goes through a slot of any size. Collective: every rank calls it, in the
// same order as its other operations on the Buffer.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "ep/buffer.h"

namespace cachalot::ep {

// Every rank returns the root's `data` (ignored elsewhere).
std::vector<std::byte> broadcast_bytes(Buffer& buffer, int root, std::span<const std::byte> data);

// The root returns every rank's `mine`, by rank (its own included); the others an empty vector.
std::vector<std::vector<std::byte>> gather_bytes(Buffer& buffer, int root, std::span<const std::byte> mine);

}  // namespace cachalot::ep
