// Loading: config.json validation names the field at fault; a checkpoint with missing tensors,
// wrong shapes or a corrupt shard fails naming them; unquantized (BF16 / F32) checkpoints load.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "core/convert.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "model/model.h"
#include "tests/model/golden.h"
#include "tests/support/test_support.h"

namespace cachalot::model {
namespace {

using nlohmann::json;

json fixture_config(const std::string& dir) {
  std::ifstream in(dir + "/config.json");
  return json::parse(in);
}

// Runs fn, expecting an Error of `kind` whose message contains every needle.
void expect_error(const std::function<void()>& fn, ErrorKind kind, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(ModelConfig, ParsesTheFixture) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const ModelConfig c = load_config(dir);
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.num_hidden_layers, 3);
  EXPECT_TRUE(c.fp8_weights);
  EXPECT_EQ(c.topk_method, TopkMethod::kNoauxTc);
  EXPECT_EQ(c.scoring_func, ScoringFunc::kSigmoid);
  ASSERT_TRUE(c.yarn.has_value());
  EXPECT_DOUBLE_EQ(c.yarn->factor, 4.0);
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_TRUE(c.is_moe_layer(1));
  // (nope + rope)^-0.5 * (0.1 * ln 4 + 1)^2
  EXPECT_NEAR(c.softmax_scale(), std::pow(96.0, -0.5) * std::pow(0.1 * std::log(4.0) + 1, 2), 1e-12);
  // And round-trips through config_to_json.
  const ModelConfig back = parse_config(config_to_json(c));
  EXPECT_EQ(back.n_routed_experts, c.n_routed_experts);
  EXPECT_EQ(back.yarn->original_max_position_embeddings, 256);
}

TEST(ModelConfig, BadValuesNameTheField) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const json base = fixture_config(dir);
  auto with = [&](const std::function<void(json&)>& edit) {
    json j = base;
    edit(j);
    return j;
  };
  const auto bad = ErrorKind::kInvalidArgument, unsupported = ErrorKind::kUnsupported;
  expect_error([&] { parse_config(with([](json& j) { j.erase("hidden_size"); })); }, bad, {"'hidden_size'", "missing"});
  expect_error([&] { parse_config(with([](json& j) { j["num_hidden_layers"] = "3"; })); }, bad, {"'num_hidden_layers'"});
  expect_error([&] { parse_config(with([](json& j) { j["vocab_size"] = 0; })); }, bad, {"'vocab_size'", "positive"});
  expect_error([&] { parse_config(with([](json& j) { j["scoring_func"] = "relu"; })); }, unsupported, {"'scoring_func'", "relu"});
  expect_error([&] { parse_config(with([](json& j) { j["topk_method"] = "best"; })); }, unsupported, {"'topk_method'"});
  expect_error([&] { parse_config(with([](json& j) { j["n_group"] = 3; })); }, bad, {"'n_group'", "divide"});
  expect_error([&] { parse_config(with([](json& j) { j["topk_group"] = 5; })); }, bad, {"'topk_group'"});
  expect_error([&] { parse_config(with([](json& j) { j["num_experts_per_tok"] = 9; })); }, bad, {"'num_experts_per_tok'"});
  expect_error([&] { parse_config(with([](json& j) { j["first_k_dense_replace"] = 4; })); }, bad, {"'first_k_dense_replace'"});
  expect_error([&] { parse_config(with([](json& j) { j["rope_scaling"]["type"] = "linear"; })); }, unsupported,
               {"'rope_scaling.type'", "linear"});
  expect_error([&] { parse_config(with([](json& j) { j["rope_scaling"].erase("factor"); })); }, bad, {"'rope_scaling.factor'"});
  expect_error([&] { parse_config(with([](json& j) { j["quantization_config"]["weight_block_size"] = {64, 64}; })); },
               unsupported, {"weight_block_size"});
  expect_error([&] { parse_config(with([](json& j) { j["kv_lora_rank"] = 100; })); }, unsupported, {"'kv_lora_rank'"});
  expect_error([&] { parse_config(with([](json& j) { j["hidden_act"] = "gelu"; })); }, unsupported, {"'hidden_act'"});
  expect_error([&] { parse_config(json::array()); }, bad, {"JSON object"});
  // V2-style values are fine: no q_lora (plain q_proj), softmax, group-limited greedy.
  const ModelConfig v2 = parse_config(with([](json& j) {
    j["q_lora_rank"] = nullptr;
    j["scoring_func"] = "softmax";
    j["topk_method"] = "group_limited_greedy";
    j["norm_topk_prob"] = false;
  }));
  EXPECT_EQ(v2.q_lora_rank, 0);
  EXPECT_EQ(v2.topk_method, TopkMethod::kGroupLimitedGreedy);
}

// Rewrites the fixture as one model.safetensors with `transform(name, tensor)` applied: return an
// undefined Tensor to drop a tensor.
void rewrite_checkpoint(const std::string& from, const ::cachalot::testing::TempDir& to,
                        const std::function<Tensor(const std::string&, const Tensor&)>& transform,
                        const std::function<void(json&)>& edit_config = {}) {
  const Checkpoint ckpt = Checkpoint::open(from);
  SafetensorsWriter w;
  for (const std::string& name : ckpt.tensor_names()) {
    Tensor t = transform(name, ckpt.tensor(name));
    if (t.defined()) w.add(name, t);
  }
  w.write(to.file("model.safetensors"));
  json config = fixture_config(from);
  if (edit_config) edit_config(config);
  std::ofstream(to.file("config.json")) << config.dump(2);
}

TEST(ModelLoad, MissingAndMisshapenTensorsAreAllNamed) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  ::cachalot::testing::TempDir tmp;
  rewrite_checkpoint(dir, tmp, [](const std::string& name, const Tensor& t) -> Tensor {
    if (name == "model.layers.1.mlp.experts.7.up_proj.weight" || name == "model.layers.2.self_attn.kv_a_layernorm.weight")
      return {};
    if (name == "model.layers.0.self_attn.o_proj.weight") return t.slice(0, 0, 128);
    return t;
  });
  expect_error([&] { Model::load(tmp.path()); }, ErrorKind::kNotFound,
               {"2 missing", "model.layers.1.mlp.experts.7.up_proj.weight", "model.layers.2.self_attn.kv_a_layernorm.weight",
                "1 mismatched", "model.layers.0.self_attn.o_proj.weight: expected F8_E4M3 [256, 256], found F8_E4M3 [128, 256]"});
}

TEST(ModelLoad, CorruptShardIsNamed) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  ::cachalot::testing::TempDir tmp;
  ::cachalot::testing::copy_folder(dir, tmp);
  const std::string shard = tmp.file("model-00002-of-00002.safetensors");
  std::filesystem::resize_file(shard, std::filesystem::file_size(shard) / 2);
  expect_error([&] { Model::load(tmp.path()); }, ErrorKind::kCorruptData, {"model-00002-of-00002.safetensors"});
  std::filesystem::remove(tmp.file("config.json"));
  expect_error([&] { Model::load(tmp.path()); }, ErrorKind::kNotFound, {"config.json"});
}

// The fixture's FP8 weights dequantized (value = e4m3 * scale_inv) and stored without scales.
Tensor dequantized(const Checkpoint& ckpt, const std::string& name, const Tensor& t, DType dtype) {
  const Tensor f32 = Linear(name, t, ckpt.tensor(name + "_scale_inv")).dequantized();
  if (dtype == DType::kF32) return f32;
  Tensor out = Tensor::empty(DType::kBF16, f32.shape());
  convert(f32.data<float>(), out.mutable_data<bf16>(), static_cast<size_t>(f32.numel()));
  return out;
}

TEST(ModelLoad, UnquantizedCheckpointsLoadAndMatchTheReference) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const Checkpoint ckpt = Checkpoint::open(dir);
  const auto golden = ::cachalot::model::testing::load_golden(dir);
  for (const DType dtype : {DType::kF32, DType::kBF16}) {
    ::cachalot::testing::TempDir tmp;
    rewrite_checkpoint(
        dir, tmp,
        [&](const std::string& name, const Tensor& t) -> Tensor {
          if (name.ends_with("_scale_inv")) return {};
          return t.dtype() == DType::kF8E4M3 ? dequantized(ckpt, name, t, dtype) : t;
        },
        [](json& j) { j.erase("quantization_config"); });
    // F32 weights are the very values the reference used: exact mode matches it to 1e-3.
    // BF16 weights are rounded: fast mode is checked by statistics.
    const Precision precision = dtype == DType::kF32 ? Precision::kExact : Precision::kFast;
    const auto model = Model::load(tmp.path(), {.precision = precision});
    EXPECT_FALSE(model->weights().layers[0].attn.o.is_fp8());
    const auto& g = golden[2];
    KvCache cache = model->make_kv_cache(2);
    const std::vector<int32_t> table{0, 1};
    const SequenceStep step{g.prompt, 0, table};
    const ForwardOutput out = model->forward({&step, 1}, cache, {.all_logits = true});
    const int64_t vocab = model->config().vocab_size;
    int agree = 0;
    for (size_t p = 0; p < g.prompt.size(); ++p) {
      const float* l = out.logits.data<float>() + p * vocab;
      agree += ::cachalot::model::testing::argmax(l, vocab) == ::cachalot::model::testing::argmax(g.prefill_logits[p]);
      if (precision == Precision::kExact)
        for (int64_t v = 0; v < vocab; ++v) ASSERT_NEAR(l[v], g.prefill_logits[p][v], 1e-3) << p << " " << v;
    }
    EXPECT_GE(double(agree) / g.prompt.size(), 0.5) << dtype_name(dtype);
  }
}

TEST(ModelForward, RejectsBadSteps) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const auto model = Model::load(dir);
  KvCache cache = model->make_kv_cache(2);
  const std::vector<int32_t> table{0, 1}, short_table{0};
  const std::vector<int32_t> tokens(70, 5), bad_token{1000};
  auto run = [&](std::span<const int32_t> t, int64_t start, std::span<const int32_t> bt) {
    const SequenceStep s{t, start, bt};
    model->forward({&s, 1}, cache);
  };
  expect_error([&] { run(tokens, 0, short_table); }, ErrorKind::kInvalidArgument, {"needs 2 KV blocks"});
  expect_error([&] { run(bad_token, 0, table); }, ErrorKind::kInvalidArgument, {"token id 1000"});
  expect_error([&] { run({}, 0, table); }, ErrorKind::kInvalidArgument, {"no new tokens"});
  expect_error([&] { run(tokens, 1000, table); }, ErrorKind::kInvalidArgument, {"context of 1024"});
  const std::vector<int32_t> outside{0, 7};
  expect_error([&] { run(tokens, 0, outside); }, ErrorKind::kInvalidArgument, {"block 7"});
}

}  // namespace
}  // namespace cachalot::model
