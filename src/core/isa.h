// Run-time CPU dispatch. Kernels come in a portable variant and an AVX-512 variant (files named
// *_avx512.cc, compiled with the AVX-512 flags); the variant is picked once per process from
// what the CPU supports, overridable with CACHALOT_ISA=portable|avx512 for tests and
// comparisons.
#pragma once

#include <string_view>

namespace cachalot {

enum class Isa {
  kPortable,  // plain C++ (auto-vectorised for the baseline x86-64 ISA)
  kAvx512,    // AVX-512 F/BW/VL/DQ/VBMI + BF16 (vdpbf16ps, vcvtneps2bf16)
};

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vbmi = false;
  bool avx512bf16 = false;
  bool avx512fp16 = false;
  bool has_avx512_kernels() const {
    return avx512f && avx512bw && avx512vl && avx512dq && avx512vbmi && avx512bf16 && fma && f16c;
  }
};

const CpuFeatures& cpu_features();

// The ISA kernels use: the best the CPU supports, unless CACHALOT_ISA or set_active_isa says
// otherwise. Asking for an ISA the CPU lacks is an error, not a silent fallback.
Isa active_isa();
void set_active_isa(Isa isa);
Isa parse_isa(std::string_view name);
std::string_view isa_name(Isa isa);

}  // namespace cachalot

// Wrap the code of *_avx512.cc files, after all #includes, in these: only the functions
// defined between them are compiled for AVX-512, so inline functions from headers (std::, fmt)
// keep the baseline ISA and cannot leak AVX-512 instructions into portable code through the
// linker's choice of one inline copy.
#define CACHALOT_AVX512_BEGIN                                                                   \
  _Pragma("GCC push_options")                                                                   \
  _Pragma("GCC target(\"avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vbmi,fma,f16c,bmi2\")")
#define CACHALOT_AVX512_END _Pragma("GCC pop_options")
