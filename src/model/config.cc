#include "model/config.h"

#include <cmath>
#include <fstream>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace cachalot::model {
namespace {

using nlohmann::json;

// Typed field access that names the field in every error.
class Fields {
 public:
  explicit Fields(const json& j) : j_(j) {
    if (!j.is_object()) raise(ErrorKind::kInvalidArgument, "config.json: expected a JSON object at the top level");
  }
  bool has(const char* name) const { return j_.contains(name) && !j_.at(name).is_null(); }
  int64_t integer(const char* name) const { return integer_in(j_, name, name); }
  int64_t integer(const char* name, int64_t fallback) const { return has(name) ? integer(name) : fallback; }
  double number(const char* name) const { return number_in(j_, name, name); }
  double number(const char* name, double fallback) const { return has(name) ? number(name) : fallback; }
  bool boolean(const char* name, bool fallback) const {
    if (!has(name)) return fallback;
    if (!j_.at(name).is_boolean()) raise(ErrorKind::kInvalidArgument, "config.json: '{}' must be true or false", name);
    return j_.at(name).get<bool>();
  }
  std::string string(const char* name, const char* fallback) const {
    if (!has(name)) return fallback;
    if (!j_.at(name).is_string()) raise(ErrorKind::kInvalidArgument, "config.json: '{}' must be a string", name);
    return j_.at(name).get<std::string>();
  }
  const json& object(const char* name) const {
    if (!j_.at(name).is_object()) raise(ErrorKind::kInvalidArgument, "config.json: '{}' must be an object", name);
    return j_.at(name);
  }

  static int64_t integer_in(const json& j, const char* name, const std::string& path) {
    if (!j.contains(name) || j.at(name).is_null())
      raise(ErrorKind::kInvalidArgument, "config.json: missing required field '{}'", path);
    const json& v = j.at(name);
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()) return static_cast<int64_t>(v.get<double>());
    raise(ErrorKind::kInvalidArgument, "config.json: '{}' must be an integer, got {}", path, v.dump());
  }
  static double number_in(const json& j, const char* name, const std::string& path) {
    if (!j.contains(name) || j.at(name).is_null())
      raise(ErrorKind::kInvalidArgument, "config.json: missing required field '{}'", path);
    const json& v = j.at(name);
    if (!v.is_number()) raise(ErrorKind::kInvalidArgument, "config.json: '{}' must be a number, got {}", path, v.dump());
    return v.get<double>();
  }

 private:
  const json& j_;
};

void require(bool ok, const char* field, const std::string& what) {
  if (!ok) raise(ErrorKind::kInvalidArgument, "config.json: '{}' {}", field, what);
}

YarnScaling parse_yarn(const json& rs) {
  const std::string type = rs.contains("type") ? rs.at("type").get<std::string>()
                           : rs.contains("rope_type") ? rs.at("rope_type").get<std::string>()
                                                      : "";
  if (type != "yarn")
    raise(ErrorKind::kUnsupported, "config.json: 'rope_scaling.type' is '{}'; only 'yarn' (or no rope_scaling) is supported",
          type);
  YarnScaling y;
  auto num = [&](const char* name, double fallback) {
    return rs.contains(name) && !rs.at(name).is_null() ? Fields::number_in(rs, name, std::string("rope_scaling.") + name)
                                                       : fallback;
  };
  y.factor = Fields::number_in(rs, "factor", "rope_scaling.factor");
  y.original_max_position_embeddings =
      Fields::integer_in(rs, "original_max_position_embeddings", "rope_scaling.original_max_position_embeddings");
  y.beta_fast = num("beta_fast", 32.0);
  y.beta_slow = num("beta_slow", 1.0);
  y.mscale = num("mscale", 1.0);
  y.mscale_all_dim = num("mscale_all_dim", 0.0);
  require(y.factor >= 1.0, "rope_scaling.factor", "must be >= 1");
  require(y.original_max_position_embeddings > 0, "rope_scaling.original_max_position_embeddings", "must be positive");
  require(y.beta_fast > y.beta_slow && y.beta_slow > 0, "rope_scaling.beta_fast",
          "must be greater than beta_slow, both positive");
  return y;
}

double yarn_mscale(double factor, double mscale) { return factor <= 1.0 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0; }

}  // namespace

double ModelConfig::softmax_scale() const {
  double scale = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
  if (yarn) {
    const double m = yarn_mscale(yarn->factor, yarn->mscale_all_dim);
    scale *= m * m;
  }
  return scale;
}

ModelConfig parse_config(const json& j) {
  const Fields f(j);
  ModelConfig c;
  const std::string model_type = f.string("model_type", "deepseek_v3");
  if (model_type != "deepseek_v3" && model_type != "deepseek_v2")
    raise(ErrorKind::kUnsupported, "config.json: 'model_type' is '{}'; cachalot runs deepseek_v3 and deepseek_v2",
          model_type);
  const std::string act = f.string("hidden_act", "silu");
  if (act != "silu") raise(ErrorKind::kUnsupported, "config.json: 'hidden_act' is '{}'; only 'silu' is supported", act);

  c.vocab_size = f.integer("vocab_size");
  c.hidden_size = f.integer("hidden_size");
  c.intermediate_size = f.integer("intermediate_size");
  c.num_hidden_layers = f.integer("num_hidden_layers");
  c.num_attention_heads = f.integer("num_attention_heads");
  c.q_lora_rank = f.integer("q_lora_rank", 0);
  c.kv_lora_rank = f.integer("kv_lora_rank");
  c.qk_nope_head_dim = f.integer("qk_nope_head_dim");
  c.qk_rope_head_dim = f.integer("qk_rope_head_dim");
  c.v_head_dim = f.integer("v_head_dim");
  c.n_routed_experts = f.integer("n_routed_experts", 0);
  c.first_k_dense_replace = f.integer("first_k_dense_replace", 0);
  c.moe_layer_freq = f.integer("moe_layer_freq", 1);
  c.rms_norm_eps = f.number("rms_norm_eps", 1e-6);
  c.rope_theta = f.number("rope_theta", 10000.0);
  c.max_position_embeddings = f.integer("max_position_embeddings");
  c.num_nextn_predict_layers = f.integer("num_nextn_predict_layers", 0);
  if (f.has("bos_token_id")) c.bos_token_id = f.integer("bos_token_id");
  if (f.has("eos_token_id")) c.eos_token_id = f.integer("eos_token_id");

  for (auto [name, v] : {std::pair{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                         {"intermediate_size", c.intermediate_size}, {"num_hidden_layers", c.num_hidden_layers},
                         {"num_attention_heads", c.num_attention_heads}, {"kv_lora_rank", c.kv_lora_rank},
                         {"qk_nope_head_dim", c.qk_nope_head_dim}, {"qk_rope_head_dim", c.qk_rope_head_dim},
                         {"v_head_dim", c.v_head_dim}, {"max_position_embeddings", c.max_position_embeddings},
                         {"moe_layer_freq", c.moe_layer_freq}})
    require(v > 0, name, fmt::format("must be positive, got {}", v));
  require(c.q_lora_rank >= 0, "q_lora_rank", "must be >= 0 (0: no low-rank query)");
  require(c.n_routed_experts >= 0, "n_routed_experts", "must be >= 0");
  require(c.first_k_dense_replace >= 0 && c.first_k_dense_replace <= c.num_hidden_layers, "first_k_dense_replace",
          fmt::format("must be in [0, num_hidden_layers = {}]", c.num_hidden_layers));
  require(c.qk_rope_head_dim % 2 == 0, "qk_rope_head_dim", "must be even (RoPE rotates pairs)");
  if (c.kv_lora_rank % 16 != 0)
    raise(ErrorKind::kUnsupported, "config.json: 'kv_lora_rank' = {} is not a multiple of 16 (the MLA kernels need that)",
          c.kv_lora_rank);
  require(c.rms_norm_eps > 0, "rms_norm_eps", "must be positive");
  require(c.rope_theta > 0, "rope_theta", "must be positive");
  require(c.num_nextn_predict_layers >= 0, "num_nextn_predict_layers", "must be >= 0");

  if (c.n_routed_experts > 0) {
    c.moe_intermediate_size = f.integer("moe_intermediate_size");
    c.n_shared_experts = f.integer("n_shared_experts", 0);
    c.num_experts_per_tok = f.integer("num_experts_per_tok");
    c.n_group = f.integer("n_group", 1);
    c.topk_group = f.integer("topk_group", 1);
    c.routed_scaling_factor = f.number("routed_scaling_factor", 1.0);
    c.norm_topk_prob = f.boolean("norm_topk_prob", false);
    const std::string scoring = f.string("scoring_func", "softmax");
    if (scoring == "sigmoid") c.scoring_func = ScoringFunc::kSigmoid;
    else if (scoring == "softmax") c.scoring_func = ScoringFunc::kSoftmax;
    else raise(ErrorKind::kUnsupported, "config.json: 'scoring_func' is '{}'; expected 'sigmoid' or 'softmax'", scoring);
    const std::string method = f.string("topk_method", "greedy");
    if (method == "noaux_tc") c.topk_method = TopkMethod::kNoauxTc;
    else if (method == "greedy") c.topk_method = TopkMethod::kGreedy;
    else if (method == "group_limited_greedy") c.topk_method = TopkMethod::kGroupLimitedGreedy;
    else
      raise(ErrorKind::kUnsupported,
            "config.json: 'topk_method' is '{}'; expected 'noaux_tc', 'greedy' or 'group_limited_greedy'", method);
    require(c.moe_intermediate_size > 0, "moe_intermediate_size", "must be positive");
    require(c.n_shared_experts >= 0, "n_shared_experts", "must be >= 0");
    require(c.n_group > 0 && c.n_routed_experts % c.n_group == 0, "n_group",
            fmt::format("must divide n_routed_experts = {}, got {}", c.n_routed_experts, c.n_group));
    require(c.topk_group > 0 && c.topk_group <= c.n_group, "topk_group",
            fmt::format("must be in [1, n_group = {}], got {}", c.n_group, c.topk_group));
    const int64_t reachable = c.topk_method == TopkMethod::kGreedy ? c.n_routed_experts
                                                                   : c.topk_group * (c.n_routed_experts / c.n_group);
    require(c.num_experts_per_tok > 0 && c.num_experts_per_tok <= reachable, "num_experts_per_tok",
            fmt::format("must be in [1, {}] (the experts in topk_group groups), got {}", reachable,
                        c.num_experts_per_tok));
    if (c.topk_method == TopkMethod::kNoauxTc)
      require(c.n_routed_experts / c.n_group >= 2, "n_group", "noaux_tc scores groups by their top 2 experts: each group needs at least 2");
    require(c.routed_scaling_factor > 0, "routed_scaling_factor", "must be positive");
  }

  if (f.has("rope_scaling")) c.yarn = parse_yarn(f.object("rope_scaling"));

  if (f.has("quantization_config")) {
    const json& q = f.object("quantization_config");
    const std::string method = q.value("quant_method", "");
    const std::string fmt_name = q.value("fmt", "e4m3");
    if (method != "fp8" || fmt_name != "e4m3")
      raise(ErrorKind::kUnsupported,
            "config.json: 'quantization_config' is {} / {}; only quant_method 'fp8' with fmt 'e4m3' is supported",
            method, fmt_name);
    const json block = q.value("weight_block_size", json::array({128, 128}));
    if (block != json::array({128, 128}))
      raise(ErrorKind::kUnsupported, "config.json: 'quantization_config.weight_block_size' is {}; only [128, 128] is supported",
            block.dump());
    const std::string scheme = q.value("activation_scheme", "dynamic");
    if (scheme != "dynamic")
      raise(ErrorKind::kUnsupported, "config.json: 'quantization_config.activation_scheme' is '{}'; only 'dynamic' is supported",
            scheme);
    c.fp8_weights = true;
  }
  if (c.eos_token_id) require(*c.eos_token_id >= 0 && *c.eos_token_id < c.vocab_size, "eos_token_id", "must be a token id below vocab_size");
  return c;
}

ModelConfig load_config(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path file = fs::is_directory(path) ? fs::path(path) / "config.json" : fs::path(path);
  std::ifstream in(file);
  if (!in) raise(ErrorKind::kNotFound, "cannot open {}: a model folder needs config.json", file.string());
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    raise(ErrorKind::kCorruptData, "{} is not valid JSON: {}", file.string(), e.what());
  }
  try {
    return parse_config(j);
  } catch (const json::exception& e) {  // a mistyped nested value
    raise(ErrorKind::kInvalidArgument, "{}: {}", file.string(), e.what());
  } catch (const Error& e) {
    throw Error(e.kind(), file.string() + ": " + e.what());
  }
}

json config_to_json(const ModelConfig& c) {
  json j = {
      {"architectures", {"DeepseekV3ForCausalLM"}},
      {"model_type", "deepseek_v3"},
      {"hidden_act", "silu"},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"moe_intermediate_size", c.moe_intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"first_k_dense_replace", c.first_k_dense_replace},
      {"moe_layer_freq", c.moe_layer_freq},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_attention_heads},
      {"q_lora_rank", c.q_lora_rank == 0 ? json(nullptr) : json(c.q_lora_rank)},
      {"kv_lora_rank", c.kv_lora_rank},
      {"qk_nope_head_dim", c.qk_nope_head_dim},
      {"qk_rope_head_dim", c.qk_rope_head_dim},
      {"v_head_dim", c.v_head_dim},
      {"n_routed_experts", c.n_routed_experts},
      {"n_shared_experts", c.n_shared_experts},
      {"num_experts_per_tok", c.num_experts_per_tok},
      {"n_group", c.n_group},
      {"topk_group", c.topk_group},
      {"routed_scaling_factor", c.routed_scaling_factor},
      {"norm_topk_prob", c.norm_topk_prob},
      {"scoring_func", c.scoring_func == ScoringFunc::kSigmoid ? "sigmoid" : "softmax"},
      {"topk_method", c.topk_method == TopkMethod::kNoauxTc          ? "noaux_tc"
                      : c.topk_method == TopkMethod::kGreedy          ? "greedy"
                                                                      : "group_limited_greedy"},
      {"rope_theta", c.rope_theta},
      {"rms_norm_eps", c.rms_norm_eps},
      {"max_position_embeddings", c.max_position_embeddings},
      {"num_nextn_predict_layers", c.num_nextn_predict_layers},
      {"tie_word_embeddings", false},
      {"torch_dtype", "bfloat16"},
  };
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (c.eos_token_id) j["eos_token_id"] = *c.eos_token_id;
  if (c.yarn)
    j["rope_scaling"] = {{"type", "yarn"},
                         {"factor", c.yarn->factor},
                         {"original_max_position_embeddings", c.yarn->original_max_position_embeddings},
                         {"beta_fast", c.yarn->beta_fast},
                         {"beta_slow", c.yarn->beta_slow},
                         {"mscale", c.yarn->mscale},
                         {"mscale_all_dim", c.yarn->mscale_all_dim}};
  if (c.fp8_weights)
    j["quantization_config"] = {{"activation_scheme", "dynamic"},
                                {"fmt", "e4m3"},
                                {"quant_method", "fp8"},
                                {"weight_block_size", {128, 128}}};
  return j;
}

void check_sequence(const ModelConfig& c, std::span<const int32_t> prompt, int64_t max_tokens) {
  CACHALOT_CHECK_ARG(!prompt.empty(), "the prompt is empty: it needs at least one token");
  for (const int32_t id : prompt) {
    CACHALOT_CHECK_ARG(id >= 0 && id < c.vocab_size, "prompt token id {} is outside the vocabulary of {}", id,
                       c.vocab_size);
  }
  const auto length = static_cast<int64_t>(prompt.size());
  CACHALOT_CHECK_ARG(length + max_tokens <= c.max_position_embeddings,
                     "the prompt ({} tokens) plus max_tokens ({}) exceeds the model's context of {} tokens", length,
                     max_tokens, c.max_position_embeddings);
}

}  // namespace cachalot::model
