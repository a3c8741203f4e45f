// A sequence's text as it is generated: token bytes become whole UTF-8 (tokenizer's
// StreamDecoder), and text that could be the start of a stop string is held back until it is
// known not to be one, so a stop string never reaches the client, even split across tokens.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace cachalot::engine {

class TextOutput {
 public:
  TextOutput(const tokenizer::Tokenizer* tokenizer, std::vector<std::string> stop);

  // Text that is final after this token; sets stopped() when a stop string completed (the text
  // up to it is returned, the stop string and anything after it never are).
  std::string push(int32_t token);
  // The held-back rest, when the sequence ends for another reason.
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::optional<tokenizer::StreamDecoder> decoder_;
  std::vector<std::string> stop_;
  std::size_t longest_stop_ = 0;
  std::string pending_;  // decoded but not yet emitted
  bool stopped_ = false;
};

}  // namespace cachalot::engine
