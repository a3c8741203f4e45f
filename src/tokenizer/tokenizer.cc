#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace cachalot::tokenizer {
namespace {

using nlohmann::json;

json parse_json(std::string_view text, std::string_view name) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    raise(ErrorKind::kCorruptData, "{} is not valid JSON: {}", name, e.what());
  }
}

// Merges are "left right" strings in older files and [left, right] arrays in newer ones.
std::vector<std::pair<std::string, std::string>> parse_merges(const json& merges) {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (const json& m : merges) {
    if (m.is_array() && m.size() == 2) {
      out.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const std::size_t space = s.find(' ', 1);
      if (space == std::string::npos) raise(ErrorKind::kCorruptData, "tokenizer.json: merge '{}' has no space", s);
      out.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else {
      raise(ErrorKind::kCorruptData, "tokenizer.json: merge {} is neither \"a b\" nor [a, b]", m.dump());
    }
  }
  return out;
}

void check_model(const json& model) {
  const std::string type = model.value("type", "BPE");
  if (type != "BPE") raise(ErrorKind::kUnsupported, "tokenizer.json: model type '{}' is not supported (BPE only)", type);
  auto unset = [&](const char* key) { return !model.contains(key) || model[key].is_null() || model[key] == false; };
  for (const char* key : {"dropout", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback"}) {
    if (!unset(key)) raise(ErrorKind::kUnsupported, "tokenizer.json: BPE option '{}' is not supported", key);
  }
  if (model.value("ignore_merges", false)) {
    raise(ErrorKind::kUnsupported, "tokenizer.json: BPE option 'ignore_merges' is not supported");
  }
}

void check_normalizer(const json& normalizer) {
  // DeepSeek's files carry an empty Sequence; real normalization (NFC, lowercasing) is not
  // implemented, so such a tokenizer is refused rather than run differently.
  if (normalizer.is_null()) return;
  if (normalizer.value("type", "") == "Sequence" && normalizer.value("normalizers", json::array()).empty()) return;
  raise(ErrorKind::kUnsupported, "tokenizer.json: normalizer {} is not supported", normalizer.dump());
}

void check_decoder(const json& decoder) {
  if (decoder.is_null() || decoder.value("type", "") == "ByteLevel") return;
  raise(ErrorKind::kUnsupported, "tokenizer.json: decoder type '{}' is not supported (ByteLevel only)",
        decoder.value("type", "?"));
}

// tokenizer_config.json writes special tokens as strings or as {"content": ...} objects.
std::string token_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content")) return value.at("content").get<std::string>();
  return {};
}

// chat_template is a string, or a list of {"name", "template"} of which "default" is the chat one.
std::string chat_template_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {
    for (const json& t : value)
      if (t.value("name", "") == "default") return t.value("template", "");
  }
  return {};
}

}  // namespace

bool Tokenizer::present(const std::filesystem::path& model_dir) {
  return std::filesystem::is_regular_file(model_dir / "tokenizer.json");
}

Tokenizer Tokenizer::load(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "tokenizer.json";
  if (!std::filesystem::exists(path)) {
    raise(ErrorKind::kNotFound, "{} not found: the model folder needs the tokenizer.json of its checkpoint", path.string());
  }
  const std::string tokenizer_text = read_text_file(path.string());
  const auto config_path = model_dir / "tokenizer_config.json";
  const std::string config_text = std::filesystem::exists(config_path) ? read_text_file(config_path.string()) : std::string();
  try {
    return from_json_text(tokenizer_text, config_text);
  } catch (const json::exception& e) {
    raise(ErrorKind::kCorruptData, "{}: unexpected structure: {}", path.string(), e.what());
  }
}

Tokenizer Tokenizer::from_json_text(std::string_view tokenizer_json, std::string_view config_json) {
  const json spec = parse_json(tokenizer_json, "tokenizer.json");
  const json config = config_json.empty() ? json::object() : parse_json(config_json, "tokenizer_config.json");
  const json& model = spec.at("model");
  check_model(model);
  check_normalizer(spec.value("normalizer", json()));
  check_decoder(spec.value("decoder", json()));

  // Ids: the model's vocabulary plus added tokens (which may reuse vocabulary ids).
  int32_t size = 0;
  for (const auto& [piece, id] : model.at("vocab").items()) size = std::max(size, id.get<int32_t>() + 1);
  const json added = spec.value("added_tokens", json::array());
  for (const json& t : added) size = std::max(size, t.at("id").get<int32_t>() + 1);

  std::vector<std::string> vocab(size);
  for (const auto& [piece, id] : model.at("vocab").items()) vocab[id.get<int32_t>()] = piece;
  Tokenizer tok(Bpe(vocab, parse_merges(model.at("merges"))));
  tok.pre_tokenizer_ = PreTokenizer::from_json(spec.value("pre_tokenizer", json()));
  tok.pieces_ = std::move(vocab);
  tok.special_.assign(size, false);
  tok.known_.assign(size, false);
  for (int32_t id = 0; id < size; ++id) tok.known_[id] = !tok.pieces_[id].empty();

  std::vector<AddedToken> added_tokens;
  for (const json& t : added) {
    AddedToken token{t.at("id").get<int32_t>(), t.at("content").get<std::string>(), t.value("special", false)};
    for (const char* flag : {"lstrip", "rstrip", "single_word"}) {
      if (t.value(flag, false)) {
        raise(ErrorKind::kUnsupported, "tokenizer.json: added token '{}' sets '{}', which is not supported",
              token.content, flag);
      }
    }
    if (token.id < 0) raise(ErrorKind::kCorruptData, "tokenizer.json: added token '{}' has id {}", token.content, token.id);
    tok.pieces_[token.id] = token.content;
    tok.special_[token.id] = token.special;
    tok.known_[token.id] = true;
    added_tokens.push_back(std::move(token));
  }
  tok.added_ = AddedVocabulary(std::move(added_tokens));

  // Decoding bytes per id: byte-level tokens map back to bytes; a token with characters outside
  // the alphabet (added tokens) stands for its own UTF-8 text, as the ByteLevel decoder does.
  tok.token_bytes_.resize(size);
  tok.piece_ids_.reserve(size);
  for (int32_t id = 0; id < size; ++id) {
    if (!tok.known_[id]) continue;
    auto bytes = byte_level::decode(tok.pieces_[id]);
    tok.token_bytes_[id] = bytes ? std::move(*bytes) : tok.pieces_[id];
    tok.piece_ids_.emplace(tok.pieces_[id], id);
  }

  tok.bos_token_ = token_text(config.value("bos_token", json()));
  tok.eos_token_ = token_text(config.value("eos_token", json()));
  if (!tok.bos_token_.empty()) tok.bos_id_ = tok.token_to_id(tok.bos_token_);
  if (!tok.eos_token_.empty()) tok.eos_id_ = tok.token_to_id(tok.eos_token_);
  tok.add_bos_ = config.value("add_bos_token", false) && tok.bos_id_;
  tok.add_eos_ = config.value("add_eos_token", false) && tok.eos_id_;
  tok.chat_template_ = chat_template_text(config.value("chat_template", json()));
  return tok;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (const std::size_t bad = utf8::find_invalid(text); bad != std::string_view::npos) {
    raise(ErrorKind::kInvalidArgument, "text is not valid UTF-8 (byte 0x{:02X} at offset {})",
          static_cast<unsigned char>(text[bad]), bad);
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_special_tokens && add_bos_) ids.push_back(*bos_id_);
  std::vector<AddedVocabulary::Segment> segments;
  added_.split(text, segments);
  std::vector<std::string_view> pieces;
  for (const auto& segment : segments) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
      continue;
    }
    pieces.clear();
    pre_tokenizer_.split(segment.text, pieces);
    for (std::string_view piece : pieces) bpe_.encode_word(piece, ids);
  }
  if (add_special_tokens && add_eos_) ids.push_back(*eos_id_);
  return ids;
}

void Tokenizer::check_id(int32_t id) const {
  if (!known(id)) {
    raise(ErrorKind::kInvalidArgument, "token id {} is not in the vocabulary (size {})", id, vocab_size());
  }
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) {
    check_id(id);
    if (skip_special_tokens && special_[id]) continue;
    bytes += token_bytes_[id];
  }
  return utf8::find_invalid(bytes) == std::string::npos ? bytes : utf8::to_valid_lossy(bytes);
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  check_id(id);
  return token_bytes_[id];
}

const std::string& Tokenizer::piece(int32_t id) const {
  check_id(id);
  return pieces_[id];
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view piece) const {
  const auto it = piece_ids_.find(std::string(piece));
  if (it == piece_ids_.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::is_special(int32_t id) const {
  check_id(id);
  return special_[id];
}

std::string StreamDecoder::push(int32_t id) {
  // A model's embedding is padded past its tokenizer's vocabulary; such ids have no text.
  if (!tokenizer_->known(id)) return {};
  const std::string& bytes = tokenizer_->token_bytes(id);
  if (skip_special_ && tokenizer_->is_special(id)) return {};
  pending_ += bytes;
  const std::size_t keep = utf8::incomplete_suffix_length(pending_);
  std::string text = utf8::to_valid_lossy(std::string_view(pending_).substr(0, pending_.size() - keep));
  pending_.erase(0, pending_.size() - keep);
  return text;
}

std::string StreamDecoder::finish() {
  std::string text = utf8::to_valid_lossy(pending_);
  pending_.clear();
  return text;
}

}  // namespace cachalot::tokenizer
