# Helpers that keep every module's CMakeLists.txt short and uniform.

# Warnings we hold every target to.
# -ffp-contract=off: no silent FMA contraction, so every ISA path rounds the same way (the GEMM
# kernels and the golden tests depend on it); kernels ask for FMA explicitly where they want it.
set(CACHALOT_COMPILE_OPTIONS -ffp-contract=off -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wno-missing-field-initializers)

# Files whose names end in _avx512.cc hold the AVX-512 kernels. They are compiled with the ISA
# flags; everything in them sits after `#include`s and inside CACHALOT_AVX512_BEGIN/END (see
# core/isa.h) so no inline function shared with portable code is emitted with AVX-512 in it.
# -Wno-maybe-uninitialized: GCC 12 warns inside its own avx512fintrin.h (_mm512_undefined_*).
set(CACHALOT_AVX512_FLAGS -Wno-maybe-uninitialized -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mavx512vbmi -mfma -mf16c -mbmi2)

# cachalot_add_library(<folder> SOURCES ... DEPS ...) -> target cachalot_<folder>
function(cachalot_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(cachalot_${name} STATIC ${ARG_SOURCES})
  target_include_directories(cachalot_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(cachalot_${name} PRIVATE ${CACHALOT_COMPILE_OPTIONS})
  target_link_libraries(cachalot_${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  foreach(src IN LISTS ARG_SOURCES)
    if(src MATCHES "_avx512\\.cc$")
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS "${CACHALOT_AVX512_FLAGS}")
    endif()
  endforeach()
  add_library(cachalot::${name} ALIAS cachalot_${name})
endfunction()

# cachalot_add_test(<name> SOURCES ... DEPS ... LABELS unit|e2e|slow [TIMEOUT s])
function(cachalot_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${CACHALOT_COMPILE_OPTIONS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} cachalot_test_support GTest::gtest GTest::gtest_main)
  gtest_discover_tests(${name}
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
    DISCOVERY_TIMEOUT 60)
endfunction()
