// Checks of dispatch/combine that every transport runs: one rank's part, called on every rank
// of a group (threads, forked processes or MPI processes). They throw std::runtime_error on a
// mismatch instead of using gtest assertions, so they work in forked children and under mpirun.
//
// Provenance is in the data, as DeepEP's tests do it: every rank can regenerate any rank's
// tokens and routing from (seed, rank), so a receiver checks each row against its source.
#pragma once

#include <cstdint>
#include <string>

#include "ep/transport.h"

namespace cachalot::ep::checks {

enum class Routing {
  kRandom,        // distinct random experts per token
  kSkewed,        // most tokens pick from the first few experts (uneven loads)
  kFirstRankOnly, // every expert on rank 0: the others receive nothing
  kOneRankEach,   // each token's experts all on one rank
  kWithHoles,     // some -1 entries, some tokens with none at all
};

struct Case {
  uint64_t seed = 1;
  int64_t tokens = 37;  // per rank; rank r has tokens + r % 3 (ragged)
  int64_t hidden = 256;
  int64_t k = 4;
  int64_t experts_per_rank = 4;
  Routing routing = Routing::kRandom;
  bool fp8 = false;
  // Normal dispatch with DispatchOptions::in_place; low-latency dispatch allowed in place (when
  // off it sends messages even where the transport could take it in place).
  bool in_place = false;
  std::string name() const;
};

// Normal mode: layout vs a hand count, received rows/scales/ids/weights vs their sources,
// combine(identity experts) == x * sum(weights) (bit-exact against the same summation order).
void normal_roundtrip(Transport& t, const Case& c);
// Low-latency mode: counts, rows and src_info vs their sources, two operations outstanding at
// once, weighted combine of identity experts == x * sum(weights).
void low_latency_roundtrip(Transport& t, const Case& c);
// broadcast_bytes / gather_bytes with every root, empty messages and messages several slot
// regions long (several rounds), the bytes checked against their sources.
void collectives(Transport& t);
// All of the above over a set of cases.
void all_cases(Transport& t);
// A message too large for the slot fails on every rank with kResourceExhausted, and the group
// still works afterwards (a dispatch that fits follows).
void overflow_then_recover(Transport& t);

}  // namespace cachalot::ep::checks
