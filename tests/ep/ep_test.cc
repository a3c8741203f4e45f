// Dispatch/combine over the `local` (threads) and `shm` (processes) transports, 1-8 ranks, and
// what happens when a rank fails, dies or never answers. The mpi transport runs the same checks
// under mpirun (ep_mpi_test.cc).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "core/error.h"
#include "ep/buffer.h"
#include "ep/launch.h"
#include "ep/shared_memory_transport.h"
#include "tests/ep/ep_checks.h"

namespace cachalot::ep {
namespace {

using Clock = std::chrono::steady_clock;

// Slots of 2 MiB: 8 shm ranks then map ~34 MB, well inside even a container's 64 MB /dev/shm.
TransportOptions small_options() {
  TransportOptions o;
  o.slot_bytes = size_t{2} << 20;
  o.timeout = std::chrono::seconds(60);
  return o;
}

void expect_all_exited_zero(const std::vector<int>& status) {
  for (size_t r = 0; r < status.size(); ++r) EXPECT_EQ(describe_exit_status(status[r]), "exited 0") << "rank " << r;
}

class LocalRanks : public ::testing::TestWithParam<int> {};
TEST_P(LocalRanks, DispatchCombineAllCases) { run_local_ranks(GetParam(), small_options(), checks::all_cases); }
INSTANTIATE_TEST_SUITE_P(Ranks, LocalRanks, ::testing::Values(1, 2, 4, 8));

// Internode mode: ranks on several "nodes" (TransportOptions::ranks_per_node), so tokens cross
// to each node once through a forwarder and combine sums per node first.
class LocalNodes : public ::testing::TestWithParam<std::tuple<int, int>> {};
TEST_P(LocalNodes, DispatchCombineAllCases) {
  TransportOptions o = small_options();
  o.ranks_per_node = std::get<1>(GetParam());
  run_local_ranks(std::get<0>(GetParam()), o, [&](Transport& t) {
    if (t.num_nodes() != std::get<0>(GetParam()) / o.ranks_per_node) throw std::runtime_error("wrong node count");
    checks::all_cases(t);
  });
}
INSTANTIATE_TEST_SUITE_P(RanksPerNode, LocalNodes,
                         ::testing::Values(std::make_tuple(4, 2), std::make_tuple(8, 2), std::make_tuple(8, 4),
                                           std::make_tuple(6, 3)));

TEST(ShmNodes, DispatchCombineAllCases) {
  TransportOptions o = small_options();
  o.ranks_per_node = 2;
  expect_all_exited_zero(run_shm_ranks(4, o, checks::all_cases));
}

class ShmRanks : public ::testing::TestWithParam<int> {};
TEST_P(ShmRanks, DispatchCombineAllCases) { expect_all_exited_zero(run_shm_ranks(GetParam(), small_options(), checks::all_cases)); }
INSTANTIATE_TEST_SUITE_P(Ranks, ShmRanks, ::testing::Values(2, 4, 8));

TEST(EpOverflow, FailsOnEveryRankAndTheGroupRecoversLocal) {
  TransportOptions o = small_options();
  o.slot_bytes = 256 << 10;
  run_local_ranks(4, o, checks::overflow_then_recover);
}

TEST(EpOverflow, FailsOnEveryRankAndTheGroupRecoversShm) {
  TransportOptions o = small_options();
  o.slot_bytes = 256 << 10;
  expect_all_exited_zero(run_shm_ranks(4, o, checks::overflow_then_recover));
}

TEST(EpFailure, AThrowingRankStopsTheOthersWithItsReason) {
  const Clock::time_point start = Clock::now();
  try {
    run_local_ranks(4, small_options(), [](Transport& t) {
      if (t.rank() == 1) throw Error(ErrorKind::kInvalidArgument, "rank one broke");
      checks::all_cases(t);
    });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_STREQ(e.what(), "rank one broke");
  }
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));  // not the 60 s timeout
}

TEST(EpFailure, ThePeersOfAFailedRankSayWhichRankFailed) {
  std::vector<std::string> seen(4);
  try {
    run_local_ranks(4, small_options(), [&](Transport& t) {
      if (t.rank() == 2) throw Error(ErrorKind::kInternal, "disk on fire");
      try {
        checks::all_cases(t);
      } catch (const Error& e) {
        seen[t.rank()] = e.what();
      }
    });
  } catch (const Error&) {
  }
  for (const int r : {0, 1, 3}) EXPECT_NE(seen[r].find("rank 2 failed (disk on fire)"), std::string::npos) << seen[r];
}

TEST(EpFailure, ASilentRankTimesOut) {
  TransportOptions o = small_options();
  o.timeout = std::chrono::milliseconds(300);
  const Clock::time_point start = Clock::now();
  try {
    run_local_ranks(3, o, [](Transport& t) {
      if (t.rank() != 2) t.barrier();  // rank 2 never joins
    });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kTimeout);
    EXPECT_NE(std::string(e.what()).find("timed out after 300 ms"), std::string::npos) << e.what();
  }
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
}

TEST(EpFailure, AnIdleRankWaitsPastTheTimeoutWithoutADeadline) {
  TransportOptions o = small_options();
  o.timeout = std::chrono::milliseconds(200);
  run_local_ranks(2, o, [](Transport& t) {
    std::byte mine{static_cast<unsigned char>(t.rank() + 1)};
    std::vector<std::byte> all(2);
    if (t.rank() == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(600));  // three timeouts' worth
      t.all_gather({&mine, 1}, all);
    } else {
      t.all_gather({&mine, 1}, all, kNoDeadline);
    }
    if (all[0] != std::byte{1} || all[1] != std::byte{2}) throw Error(ErrorKind::kInternal, "all_gather mixed up");
  });
}

TEST(EpFailure, AProcessThatDiesMidStepEndsTheStepOnTheOthers) {
  TransportOptions o = small_options();
  o.timeout = std::chrono::seconds(60);
  const Clock::time_point start = Clock::now();
  const std::vector<int> status = run_shm_ranks(4, o, [](Transport& t) {
    if (t.rank() == 2) _exit(3);  // dies without a word, as a crash would
    try {
      checks::all_cases(t);
    } catch (const Error& e) {
      const std::string what = e.what();
      if (e.kind() == ErrorKind::kTimeout &&
          (what.find("rank 2 (pid") != std::string::npos || what.find("failed (rank") != std::string::npos))
        return;  // the expected failure: exit 0
      throw;
    }
    throw Error(ErrorKind::kInternal, "the step went through without rank 2");
  });
  EXPECT_EQ(describe_exit_status(status[2]), "exited 3");
  for (const int r : {0, 1, 3}) EXPECT_EQ(describe_exit_status(status[r]), "exited 0") << "rank " << r;
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(20));  // well before the 60 s timeout
}

TEST(EpShm, MismatchedSizesAndBadNamesAreRefused) {
  const std::string name = unique_shm_name();
  TransportOptions a = small_options(), b = small_options();
  a.timeout = b.timeout = std::chrono::milliseconds(1000);
  b.slot_bytes = a.slot_bytes * 2;
  std::string first_error;
  std::thread first([&] {
    try {
      open_shm_transport(name, 0, 2, a);
    } catch (const Error& e) {
      first_error = e.what();  // the second rank never joins: timeout
    }
  });
  try {
    open_shm_transport(name, 1, 2, b);
    ADD_FAILURE() << "mismatched sizes accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("was made for 2 ranks"), std::string::npos) << e.what();
  }
  first.join();
  EXPECT_NE(first_error.find("all 2 ranks to join"), std::string::npos) << first_error;
  EXPECT_THROW(open_shm_transport("no-slash", 0, 1, a), Error);
  EXPECT_THROW(open_shm_transport(name, 0, kMaxRanks + 1, a), Error);
}

// Pulls: what a rank wrote into its own area is read by its peers after the round, and the rank
// cannot write there again (own_area, or its next round on the slot) until every peer is done
// reading. Rank 0 reads late; rank 1 asks for its area again at once and must wait.
TEST(EpTransport, AnAreaBeingPulledFromWaitsForItsReaders) {
  run_local_ranks(2, small_options(), [](Transport& t) {
    const std::vector<size_t> none(2, 0);
    std::span<std::byte> mine = t.own_area(0, 64, 64);
    std::memset(mine.data(), t.rank() + 1, mine.size());
    t.post(0, none, none);
    t.wait(0);
    if (t.rank() == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const std::span<const std::byte> theirs = t.peer_area(0, 1, 64, 64);
      for (const std::byte b : theirs) ASSERT_EQ(static_cast<int>(b), 2) << "rank 1 wrote into its area while it was read";
      t.done_reading(0);
    } else {
      t.done_reading(0);
      const Clock::time_point start = Clock::now();
      std::memset(t.own_area(0, 64, 64).data(), 99, 64);
      EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(100)) << "own_area did not wait for rank 0";
    }
    t.barrier();
  });
}

// A zero-copy combine needs every rank to pass its combine buffer: where one rank does and the
// other does not, both fail with an error naming it, and the group goes on working.
TEST(EpBuffer, ZeroCopyCombineOnSomeRanksOnlyIsAnError) {
  TransportOptions o = small_options();
  run_local_ranks(2, o, [](Transport& t) {
    Buffer b(t);
    const int64_t tokens = 4, hidden = 64, experts = 4;
    Tensor x = Tensor::zeros(DType::kF32, {tokens, hidden});
    Tensor topk = Tensor::zeros(DType::kI32, {tokens, 2});
    for (int64_t i = 0; i < tokens; ++i) topk.mutable_data<int32_t>()[2 * i + 1] = 2;  // experts 0 and 2: both ranks
    Tensor w = Tensor::zeros(DType::kF32, {tokens, 2});
    LowLatencyRecv r = b.low_latency_dispatch(x, topk, tokens, experts, false).receive();
    Tensor out = t.rank() == 0 ? b.low_latency_combine_buffer(r.handle, DType::kF32)
                               : Tensor::zeros(DType::kF32, {experts / 2, 2 * tokens, hidden});
    PendingCombine c = b.low_latency_combine(out, w, r.handle);
    EXPECT_EQ(c.zero_copy(), t.rank() == 0);
    try {
      c.receive();
      ADD_FAILURE() << "rank " << t.rank() << ": a combine with buffers on some ranks only succeeded";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("every rank must pass it"), std::string::npos) << e.what();
    }
    checks::Case c2;
    c2.in_place = true;
    checks::low_latency_roundtrip(t, c2);
  });
}

// The combine buffer lies in the slot of the next operation: any operation but its combine
// would reuse that slot under the outputs, so it is refused, and the combine still goes through.
TEST(EpBuffer, OnlyTheCombineMayFollowACombineBuffer) {
  run_local_ranks(2, small_options(), [](Transport& t) {
    Buffer b(t);
    const int64_t tokens = 4, hidden = 64, experts = 4;
    Tensor x = Tensor::zeros(DType::kF32, {tokens, hidden});
    Tensor topk = Tensor::zeros(DType::kI32, {tokens, 1});
    Tensor w = Tensor::zeros(DType::kF32, {tokens, 1});
    LowLatencyRecv r = b.low_latency_dispatch(x, topk, tokens, experts, false).receive();
    Tensor out = b.low_latency_combine_buffer(r.handle, DType::kF32);
    EXPECT_THROW(b.low_latency_dispatch(x, topk, tokens, experts, false), Error);
    PendingCombine c = b.low_latency_combine(out, w, r.handle);
    EXPECT_TRUE(c.zero_copy());
    EXPECT_EQ(c.receive().size(0), tokens);
  });
}

TEST(EpBuffer, BadArgumentsAreErrors) {
  run_local_ranks(2, small_options(), [](Transport& t) {
    Buffer b(t);
    Tensor x = Tensor::zeros(DType::kF32, {4, 64});
    Tensor topk = Tensor::zeros(DType::kI32, {4, 2});
    topk.mutable_data<int32_t>()[1] = 9;  // only 4 experts
    EXPECT_THROW(b.get_dispatch_layout(topk, 4), Error);
    EXPECT_THROW(b.get_dispatch_layout(Tensor::zeros(DType::kI32, {4, 2}), 3), Error);  // 3 experts over 2 ranks
    Tensor ok = Tensor::zeros(DType::kI32, {4, 2});
    ok.mutable_data<int32_t>()[1] = 1;
    const DispatchLayout layout = b.get_dispatch_layout(ok, 4);
    EXPECT_THROW(b.dispatch(x, Tensor(), ok, Tensor::zeros(DType::kF32, {3, 2}), layout), Error);
    EXPECT_THROW(b.dispatch(Tensor::zeros(DType::kF8E4M3, {4, 64}), Tensor(), ok, Tensor::zeros(DType::kF32, {4, 2}), layout),
                 Error);  // FP8 without scales
    EXPECT_THROW(b.low_latency_dispatch(x, ok, 2, 4, false), Error);  // 4 tokens over a cap of 2
    Tensor twice = Tensor::zeros(DType::kI32, {4, 2});               // expert 0 twice per token
    EXPECT_THROW(b.low_latency_dispatch(x, twice, 4, 4, false), Error);
  });
}

}  // namespace
}  // namespace cachalot::ep
