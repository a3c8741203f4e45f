// Pre-tokenization: cuts text into the pieces BPE encodes one at a time, as the HF tokenizers'
// pre_tokenizer does. Supported: Split (regex or string pattern; Removed, Isolated,
// MergedWithPrevious, MergedWithNext, Contiguous; invert), ByteLevel (without a prefix space;
// with use_regex it splits by GPT-2's pattern) and Sequence of those. Anything else is refused at
// load with the type named, so an unsupported tokenizer never tokenizes silently wrong.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace cachalot::tokenizer {

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class PreTokenizer {
 public:
  // From tokenizer.json's "pre_tokenizer" (null: the whole text is one piece).
  static PreTokenizer from_json(const nlohmann::json& spec);

  // Appends text's pieces, in order, as views into text. text must be valid UTF-8.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  struct Step {
    Regex regex;
    SplitBehavior behavior;
    bool invert;
  };
  void add_steps(const nlohmann::json& spec);
  static void apply(const Step& step, std::string_view piece, std::vector<std::string_view>& out);

  std::vector<Step> steps_;
};

}  // namespace cachalot::tokenizer
