// The mpi transport under mpirun with 2, 4 and 8 processes (oversubscribed: CI has 2 cores).
#include <gtest/gtest.h>
#include <string>

#include "tests/support/test_support.h"

namespace {

std::string mpirun(int ranks) { return cachalot::testing::mpirun_prefix(ranks) + CACHALOT_EP_MPI_CHECK; }

class MpiRanks : public ::testing::TestWithParam<int> {};

TEST_P(MpiRanks, DispatchCombineAllCases) {
  const auto r = cachalot::testing::run_shell(mpirun(GetParam()));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  size_t ok = 0;
  for (size_t at = r.out.find(": ok"); at != std::string::npos; at = r.out.find(": ok", at + 1)) ++ok;
  EXPECT_EQ(ok, static_cast<size_t>(GetParam())) << r.out;
}
INSTANTIATE_TEST_SUITE_P(Ranks, MpiRanks, ::testing::Values(2, 4, 8));

}  // namespace
