#include "tokenizer/pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "core/error.h"

namespace cachalot::tokenizer {
namespace {

// GPT-2's pattern, which ByteLevel applies when use_regex is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

SplitBehavior parse_behavior(const std::string& name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  raise(ErrorKind::kUnsupported, "tokenizer.json: pre_tokenizer Split behavior '{}' is not supported", name);
}

struct Span {
  std::size_t begin, end;
  bool is_match;
};

}  // namespace

PreTokenizer PreTokenizer::from_json(const nlohmann::json& spec) {
  PreTokenizer result;
  if (!spec.is_null()) result.add_steps(spec);
  return result;
}

void PreTokenizer::add_steps(const nlohmann::json& spec) {
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    for (const auto& inner : spec.at("pretokenizers")) add_steps(inner);
  } else if (type == "Split") {
    const auto& pattern = spec.at("pattern");
    const bool literal = pattern.contains("String");
    const std::string text = literal ? pattern.at("String").get<std::string>() : pattern.at("Regex").get<std::string>();
    steps_.push_back({Regex(text, literal), parse_behavior(spec.at("behavior").get<std::string>()),
                      spec.value("invert", false)});
  } else if (type == "ByteLevel") {
    // The byte-to-alphabet mapping itself happens in the BPE model, which works on raw bytes.
    if (spec.value("add_prefix_space", false)) {
      raise(ErrorKind::kUnsupported, "tokenizer.json: ByteLevel pre_tokenizer with add_prefix_space is not supported");
    }
    if (spec.value("use_regex", true)) steps_.push_back({Regex(kGpt2Pattern), SplitBehavior::kIsolated, false});
  } else {
    raise(ErrorKind::kUnsupported, "tokenizer.json: pre_tokenizer type '{}' is not supported", type);
  }
}

void PreTokenizer::apply(const Step& step, std::string_view piece, std::vector<std::string_view>& out) {
  std::vector<Span> spans;
  std::size_t last = 0;
  step.regex.for_each_match(piece, [&](std::size_t begin, std::size_t end) {
    if (begin > last) spans.push_back({last, begin, step.invert});
    spans.push_back({begin, end, !step.invert});
    last = end;
  });
  if (last < piece.size()) spans.push_back({last, piece.size(), step.invert});

  // Merge spans by the behavior (the same rules as the HF tokenizers' NormalizedString::split).
  std::vector<Span> kept;
  switch (step.behavior) {
    case SplitBehavior::kIsolated:
      kept = std::move(spans);
      break;
    case SplitBehavior::kRemoved:
      for (const Span& s : spans)
        if (!s.is_match) kept.push_back(s);
      break;
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (!kept.empty() && kept.back().is_match == s.is_match) kept.back().end = s.end;
        else kept.push_back(s);
      }
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !kept.empty()) kept.back().end = s.end;
        else kept.push_back(s);
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !kept.empty()) kept.back().begin = it->begin;
        else kept.push_back(*it);
        previous_match = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    }
  }
  for (const Span& s : kept) out.push_back(piece.substr(s.begin, s.end - s.begin));
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  if (text.empty()) return;
  std::vector<std::string_view> current{text}, next;
  for (const Step& step : steps_) {
    next.clear();
    for (std::string_view piece : current) apply(step, piece, next);
    current.swap(next);
  }
  pieces.insert(pieces.end(), current.begin(), current.end());
}

}  // namespace cachalot::tokenizer
