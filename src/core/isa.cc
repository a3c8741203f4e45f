#include "core/isa.h"

#include <atomic>
#include <cstdlib>

#include "core/error.h"

namespace cachalot {

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
    __builtin_cpu_init();
    // __builtin_cpu_supports also checks that the OS saves the AVX/AVX-512 register state.
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.f16c = __builtin_cpu_supports("f16c");
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512bw = __builtin_cpu_supports("avx512bw");
    f.avx512vl = __builtin_cpu_supports("avx512vl");
    f.avx512dq = __builtin_cpu_supports("avx512dq");
    f.avx512vbmi = __builtin_cpu_supports("avx512vbmi");
    f.avx512bf16 = __builtin_cpu_supports("avx512bf16");
    f.avx512fp16 = __builtin_cpu_supports("avx512fp16");
    return f;
  }();
  return features;
}

namespace {

Isa best_isa() { return cpu_features().has_avx512_kernels() ? Isa::kAvx512 : Isa::kPortable; }

void require_supported(Isa isa) {
  if (isa == Isa::kAvx512 && !cpu_features().has_avx512_kernels())
    raise(ErrorKind::kUnsupported,
          "ISA avx512 requested but this CPU lacks AVX-512 F/BW/VL/DQ/VBMI/BF16; use portable");
}

std::atomic<Isa>& active_isa_slot() {
  static std::atomic<Isa> slot = [] {
    const char* env = std::getenv("CACHALOT_ISA");
    if (env == nullptr || *env == '\0') return best_isa();
    const Isa isa = parse_isa(env);
    require_supported(isa);
    return isa;
  }();
  return slot;
}

}  // namespace

Isa active_isa() { return active_isa_slot().load(std::memory_order_relaxed); }

void set_active_isa(Isa isa) {
  require_supported(isa);
  active_isa_slot().store(isa, std::memory_order_relaxed);
}

Isa parse_isa(std::string_view name) {
  if (name == "portable") return Isa::kPortable;
  if (name == "avx512") return Isa::kAvx512;
  raise(ErrorKind::kInvalidArgument, "unknown ISA '{}': use portable or avx512", name);
}

std::string_view isa_name(Isa isa) { return isa == Isa::kAvx512 ? "avx512" : "portable"; }

}  // namespace cachalot
