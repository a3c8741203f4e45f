// The two forms of MLA (attention_cost.h) on one layer of the tiny fixture in fast mode: the
// expanded form (mla_prefill on kv_b-expanded keys) against the absorbed one (mla_decode), for
// whole prompts, chunks after a cached prefix and mixed batches; and the choice between them.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/safetensors.h"
#include "model/attention.h"
#include "model/model.h"
#include "model/weights.h"
#include "tests/model/golden.h"
#include "tests/support/test_support.h"

namespace cachalot::model {
namespace {

struct Layer {
  ModelConfig config;
  Checkpoint checkpoint;
  ModelWeights weights;
};

std::unique_ptr<Layer> load_layer(const std::string& dir) {
  auto l = std::make_unique<Layer>();
  l->config = load_config(dir + "/config.json");
  l->checkpoint = Checkpoint::open(dir);
  l->weights = bind_weights(l->checkpoint, l->config);
  return l;
}

Tensor random_rows(int64_t rows, int64_t hidden, uint32_t seed) {
  Tensor x = Tensor::empty(DType::kF32, {rows, hidden});
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int64_t i = 0; i < x.numel(); ++i) x.mutable_data<float>()[i] = dist(rng);
  return x;
}

mla::PagedKvCache make_cache(const ModelConfig& c) {
  return mla::PagedKvCache({c.kv_lora_rank, c.qk_rope_head_dim, mla::KvFormat::kBf16}, 64);
}

// One forward of sequences given as (start, rows) with blocks 16s.. for sequence s.
struct Batch {
  std::vector<std::vector<int32_t>> tables;
  BatchLayout layout;
};
Batch make_batch(const std::vector<std::pair<int64_t, int64_t>>& seqs) {
  Batch b;
  b.layout.seq_begin.push_back(0);
  for (size_t s = 0; s < seqs.size(); ++s) {
    std::vector<int32_t> t(16);
    for (int i = 0; i < 16; ++i) t[i] = static_cast<int32_t>(16 * s + i);
    b.tables.push_back(t);
  }
  for (size_t s = 0; s < seqs.size(); ++s) {
    const auto [start, rows] = seqs[s];
    b.layout.start.push_back(start);
    b.layout.block_table.push_back(b.tables[s]);
    for (int64_t i = 0; i < rows; ++i) {
      b.layout.row_seq.push_back(static_cast<int64_t>(s));
      b.layout.row_pos.push_back(start + i);
    }
    b.layout.seq_begin.push_back(b.layout.rows());
  }
  return b;
}

// Cosine of two outputs as whole vectors (golden.h's, on a Tensor pair).
double cosine(const Tensor& a, const Tensor& b) {
  return testing::cosine(a.data<float>(), std::vector<double>(b.data<float>(), b.data<float>() + b.numel()));
}

bool same_rows(const Tensor& a, int64_t a_row, const Tensor& b, int64_t b_row, int64_t rows) {
  const int64_t w = a.size(1);
  return std::equal(a.data<float>() + a_row * w, a.data<float>() + (a_row + rows) * w, b.data<float>() + b_row * w);
}

class AttentionForms : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = cachalot::testing::fixture_path("tiny-dsv3");
    if (dir.empty()) GTEST_SKIP() << "fixture tiny-dsv3 not found";
    layer_ = load_layer(dir);
  }
  Attention make(std::optional<AttentionForm> form) const {
    return Attention(layer_->config, layer_->weights.layers[0].attn, Precision::kFast, form);
  }
  std::unique_ptr<Layer> layer_;
};

TEST_F(AttentionForms, ExpandedPromptAgreesWithAbsorbed) {
  const ModelConfig& c = layer_->config;
  const Attention absorbed = make(AttentionForm::kAbsorbed), expanded = make(AttentionForm::kExpanded);
  for (const int64_t len : {1, 2, 63, 64, 65, 200}) {
    const Batch b = make_batch({{0, len}});
    const Tensor x = random_rows(len, c.hidden_size, static_cast<uint32_t>(len));
    mla::PagedKvCache ca = make_cache(c), ce = make_cache(c);
    const Tensor ya = absorbed.forward(x, b.layout, ca), ye = expanded.forward(x, b.layout, ce);
    // BF16 roundings at different points (the expanded keys vs the absorbed queries and latent
    // outputs), then o_proj's FP8 inputs: close, not equal.
    EXPECT_GT(cosine(ya, ye), 0.9995) << len << " tokens";
  }
}

TEST_F(AttentionForms, ChunkAfterACachedPrefix) {
  const ModelConfig& c = layer_->config;
  const Attention absorbed = make(AttentionForm::kAbsorbed), expanded = make(AttentionForm::kExpanded);
  const Tensor x = random_rows(170, c.hidden_size, 5);
  mla::PagedKvCache ca = make_cache(c), ce = make_cache(c);
  const Batch first = make_batch({{0, 100}}), second = make_batch({{100, 70}});
  absorbed.forward(x.slice(0, 0, 100).clone(), first.layout, ca);
  expanded.forward(x.slice(0, 0, 100).clone(), first.layout, ce);
  const Tensor rest = x.slice(0, 100, 170).clone();
  EXPECT_GT(cosine(absorbed.forward(rest, second.layout, ca), expanded.forward(rest, second.layout, ce)), 0.9995);
}

TEST_F(AttentionForms, SplittingTheHeadsChangesNothing) {
  const ModelConfig& c = layer_->config;
  Attention whole = make(AttentionForm::kExpanded), one_head_at_a_time = make(AttentionForm::kExpanded);
  one_head_at_a_time.set_expanded_kv_bytes(1);
  const Batch b = make_batch({{0, 90}});
  const Tensor x = random_rows(90, c.hidden_size, 9);
  mla::PagedKvCache c1 = make_cache(c), c2 = make_cache(c);
  const Tensor y1 = whole.forward(x, b.layout, c1), y2 = one_head_at_a_time.forward(x, b.layout, c2);
  EXPECT_TRUE(same_rows(y1, 0, y2, 0, 90));
}

TEST_F(AttentionForms, MixedBatchGivesEachSequenceItsFormsResult) {
  // A prompt (expanded by cost), a decode step after 40 cached tokens and a 2-token chunk after
  // 150 (absorbed by cost), in one batch: each sequence's rows equal running it alone in its form.
  const ModelConfig& c = layer_->config;
  ASSERT_EQ(cheaper_attention_form(c, 50, 50), AttentionForm::kExpanded);
  ASSERT_EQ(cheaper_attention_form(c, 1, 41), AttentionForm::kAbsorbed);
  ASSERT_EQ(cheaper_attention_form(c, 2, 152), AttentionForm::kAbsorbed);
  const Attention automatic = make(std::nullopt), absorbed = make(AttentionForm::kAbsorbed),
                  expanded = make(AttentionForm::kExpanded);
  const Tensor prefix = random_rows(150, c.hidden_size, 20), x = random_rows(53, c.hidden_size, 21);
  mla::PagedKvCache mixed = make_cache(c);
  // Sequences 1 and 2 have their prefixes cached (written by a forward of their own).
  const Batch prefixes = make_batch({{0, 0}, {0, 40}, {0, 150}});
  Tensor both = Tensor::empty(DType::kF32, {190, c.hidden_size});
  std::copy_n(prefix.data<float>(), 40 * c.hidden_size, both.mutable_data<float>());
  std::copy_n(prefix.data<float>(), 150 * c.hidden_size, both.mutable_data<float>() + 40 * c.hidden_size);
  absorbed.forward(both, prefixes.layout, mixed);
  mla::PagedKvCache alone = make_cache(c);
  absorbed.forward(both, prefixes.layout, alone);

  const Batch batch = make_batch({{0, 50}, {40, 1}, {150, 2}});
  const Tensor y = automatic.forward(x, batch.layout, mixed);
  const Tensor y_prompt = expanded.forward(x.slice(0, 0, 50).clone(), make_batch({{0, 50}}).layout, alone);
  const Batch tails = make_batch({{0, 0}, {40, 1}, {150, 2}});
  const Tensor y_tails = absorbed.forward(x.slice(0, 50, 53).clone(), tails.layout, alone);
  EXPECT_TRUE(same_rows(y, 0, y_prompt, 0, 50));
  EXPECT_TRUE(same_rows(y, 50, y_tails, 0, 3));
}

TEST(AttentionCost, CountsAndChoosesTheCheaperForm) {
  ModelConfig c;  // DeepSeek-V3's attention dims
  c.num_attention_heads = 128, c.kv_lora_rank = 512, c.qk_nope_head_dim = 128, c.qk_rope_head_dim = 64,
  c.v_head_dim = 128;
  // One decode token over 1000 keys: W_UK + W_UV (2 x 128 x 512 x 256) + 1000 pairs x 128 heads
  // x 2 x (1024 + 64) FLOPs absorbed; expanded pays kv_b for all 1000 keys.
  EXPECT_DOUBLE_EQ(attention_flops(c, AttentionForm::kAbsorbed, 1, 1000), 2.0 * 128 * 512 * 256 + 1000 * 128 * 2.0 * 1088);
  EXPECT_DOUBLE_EQ(attention_flops(c, AttentionForm::kExpanded, 1, 1000), 1000 * 2.0 * 128 * 512 * 256 + 1000 * 128 * 2.0 * 320);
  // A 4-token prompt: 10 causal pairs.
  EXPECT_DOUBLE_EQ(attention_flops(c, AttentionForm::kExpanded, 4, 4), 4 * 2.0 * 128 * 512 * 256 + 10 * 128 * 2.0 * 320);
  EXPECT_EQ(cheaper_attention_form(c, 1, 1000), AttentionForm::kAbsorbed);
  EXPECT_EQ(cheaper_attention_form(c, 2, 1000), AttentionForm::kAbsorbed);
  EXPECT_EQ(cheaper_attention_form(c, 1000, 1000), AttentionForm::kExpanded);
  EXPECT_EQ(cheaper_attention_form(c, 2, 2), AttentionForm::kExpanded);
  EXPECT_EQ(cheaper_attention_form(c, 1, 1), AttentionForm::kExpanded);  // same projections, narrower pair
  EXPECT_EQ(cheaper_attention_form(c, 100, 1000), AttentionForm::kAbsorbed);  // a chunk after 900 cached
  EXPECT_EQ(cheaper_attention_form(c, 256, 4096), AttentionForm::kExpanded);
}

}  // namespace
}  // namespace cachalot::model
