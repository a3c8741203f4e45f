// The text <-> token id mapping of a model: a Hugging Face tokenizer.json (byte-level BPE with
// added tokens and Split pre-tokenizers, as DeepSeek-V3/V2 ship) plus the special-token settings
// of tokenizer_config.json. Thread-safe for concurrent encode/decode.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/added_vocabulary.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pre_tokenizer.h"

namespace cachalot::tokenizer {

class Tokenizer {
 public:
  // Loads tokenizer.json (and tokenizer_config.json beside it, if present) from a model folder.
  // Throws Error(kNotFound) when tokenizer.json is missing, kCorruptData / kUnsupported when it
  // cannot be read or uses a component this implementation does not have (named in the message).
  static Tokenizer load(const std::filesystem::path& model_dir);
  static bool present(const std::filesystem::path& model_dir);
  // From the two files' JSON texts (config may be empty).
  static Tokenizer from_json_text(std::string_view tokenizer_json, std::string_view config_json);

  // Token ids of text. Added tokens written in the text (e.g. "<｜User｜>") become their ids.
  // add_special_tokens prepends BOS / appends EOS where tokenizer_config.json asks for them
  // (add_bos_token / add_eos_token). Text that is not valid UTF-8 is refused with
  // Error(kInvalidArgument) giving the byte offset: nothing is silently replaced on the way in.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;

  // Text of ids: byte-level tokens become their bytes, added tokens their content; byte sequences
  // that are not UTF-8 (a token sequence cut inside a character) become U+FFFD. Ids outside the
  // vocabulary are an Error(kInvalidArgument).
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // The raw bytes one token stands for (possibly part of a UTF-8 character).
  const std::string& token_bytes(int32_t id) const;
  // The token as written in tokenizer.json ("Ġworld", "<｜User｜>").
  const std::string& piece(int32_t id) const;
  std::optional<int32_t> token_to_id(std::string_view piece) const;
  bool is_special(int32_t id) const;
  // Whether the id has a token (false past the vocabulary and in gaps of the id space).
  bool known(int32_t id) const { return id >= 0 && id < vocab_size() && known_[id]; }

  // One more than the largest id.
  int32_t vocab_size() const { return static_cast<int32_t>(pieces_.size()); }
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }
  // The Jinja chat template from tokenizer_config.json (empty if there is none).
  const std::string& chat_template() const { return chat_template_; }

 private:
  Tokenizer(Bpe bpe) : bpe_(std::move(bpe)) {}
  void check_id(int32_t id) const;

  Bpe bpe_;
  PreTokenizer pre_tokenizer_;
  AddedVocabulary added_;
  std::vector<std::string> pieces_;       // by id
  std::vector<std::string> token_bytes_;  // by id
  std::vector<bool> special_;             // by id
  std::vector<bool> known_;               // by id: false for gaps in the id space
  std::unordered_map<std::string, int32_t> piece_ids_;
  std::optional<int32_t> bos_id_, eos_id_;
  std::string bos_token_, eos_token_, chat_template_;
  bool add_bos_ = false, add_eos_ = false;
};

// Turns a stream of token ids into text that is always whole UTF-8: bytes of a character that a
// later token will finish are held back; bytes that can never become a character are emitted as
// U+FFFD. The concatenation of every push() and finish() equals Tokenizer::decode of all ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = true)
      : tokenizer_(&tokenizer), skip_special_(skip_special_tokens) {}

  // Text that became complete with this token (often empty mid-character).
  std::string push(int32_t id);
  // The rest, with an unfinished character replaced by U+FFFD.
  std::string finish();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace cachalot::tokenizer
