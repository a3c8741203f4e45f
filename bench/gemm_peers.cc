#include "bench/gemm_peers.h"

#include <cblas.h>

#include <dnnl.hpp>

namespace cachalot::bench {

struct OneDnnBf16Matmul::Impl {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  dnnl::memory::desc a_md, d_md;
  dnnl::matmul matmul;
  dnnl::memory weights;
};

OneDnnBf16Matmul::OneDnnBf16Matmul(int64_t m, int64_t n, int64_t k, const uint16_t* b) : impl_(new Impl) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  impl_->a_md = dnnl::memory::desc({m, k}, dt::bf16, tag::ab);
  impl_->d_md = dnnl::memory::desc({m, n}, dt::bf16, tag::ab);
  // Weights [K, N] viewed over our [N, K] rows ("ba"); oneDNN picks its own layout ("any").
  const dnnl::memory::desc b_user({k, n}, dt::bf16, tag::ba);
  const dnnl::memory::desc b_any({k, n}, dt::bf16, tag::any);
  // oneDNN 2.x API (Debian 12 ships 2.6): an operation descriptor, then its primitive descriptor.
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(impl_->a_md, b_any, impl_->d_md), impl_->engine);
  impl_->matmul = dnnl::matmul(pd);
  dnnl::memory user(b_user, impl_->engine, const_cast<uint16_t*>(b));
  impl_->weights = dnnl::memory(pd.weights_desc(), impl_->engine);
  dnnl::reorder(user, impl_->weights).execute(impl_->stream, user, impl_->weights);
  impl_->stream.wait();
}

OneDnnBf16Matmul::~OneDnnBf16Matmul() = default;

void OneDnnBf16Matmul::run(const uint16_t* a, uint16_t* d) {
  dnnl::memory a_mem(impl_->a_md, impl_->engine, const_cast<uint16_t*>(a));
  dnnl::memory d_mem(impl_->d_md, impl_->engine, d);
  impl_->matmul.execute(impl_->stream,
                        {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, impl_->weights}, {DNNL_ARG_DST, d_mem}});
  impl_->stream.wait();
}

void openblas_sgemm_nt(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(m), static_cast<blasint>(n),
              static_cast<blasint>(k), 1.0f, a, static_cast<blasint>(k), b, static_cast<blasint>(k), 0.0f, c,
              static_cast<blasint>(n));
}

}  // namespace cachalot::bench
