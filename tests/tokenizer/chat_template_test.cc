// The chat template of DeepSeek-V3 rendered by our Jinja subset against the references
// (@huggingface/jinja via the fixture's golden.json and data/references.json), and the subset's
// own semantics and errors.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tests/support/test_support.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/jinja.h"
#include "tokenizer/tokenizer.h"

namespace cachalot::tokenizer {
namespace {

using nlohmann::ordered_json;

ordered_json read_json(const std::string& path) {
  std::ifstream in(path);
  return ordered_json::parse(in);
}

std::string references_path() { return std::string(CACHALOT_TOKENIZER_TEST_DATA) + "/references.json"; }

const Tokenizer& fixture_tokenizer(const std::string& dir) {
  static const Tokenizer tok = Tokenizer::load(dir);
  return tok;
}

TEST(ChatTemplateGolden, RendersTheFixtureChatsExactly) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tokenizer");
  const Tokenizer& tok = fixture_tokenizer(dir);
  const ChatTemplate chat = ChatTemplate::from_tokenizer(tok);
  const ordered_json golden = read_json(dir + "/golden.json");
  ASSERT_FALSE(golden.at("chats").empty());
  for (const auto& c : golden.at("chats")) {
    const std::string text = chat.render(c.at("messages"), c.at("add_generation_prompt").get<bool>());
    EXPECT_EQ(text, c.at("text").get<std::string>());
    EXPECT_EQ(tok.encode(text), c.at("ids").get<std::vector<int32_t>>());
  }
}

TEST(ChatTemplateGolden, RendersToolCallsAndOutputsLikeTheReference) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tokenizer");
  const Tokenizer& tok = fixture_tokenizer(dir);
  const ChatTemplate chat = ChatTemplate::from_tokenizer(tok);
  const ordered_json refs = read_json(references_path());
  ASSERT_GE(refs.at("chats").size(), 10u);
  for (const auto& c : refs.at("chats")) {
    const std::string text = chat.render(c.at("messages"), c.at("add_generation_prompt").get<bool>());
    EXPECT_EQ(text, c.at("text").get<std::string>()) << c.at("messages").dump();
    EXPECT_EQ(tok.encode(text), c.at("ids").get<std::vector<int32_t>>());
  }
  for (const auto& e : refs.at("encodings")) {
    const std::string text = e.at("text");
    EXPECT_EQ(tok.encode(text), e.at("ids").get<std::vector<int32_t>>()) << text;
    EXPECT_EQ(tok.decode(e.at("ids").get<std::vector<int32_t>>()), text);
  }
}

TEST(ChatTemplate, ContentPartsAndMalformedMessages) {
  const ChatTemplate chat("{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}", "<s>", "</s>");
  const auto parts = ordered_json::parse(R"([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])");
  EXPECT_EQ(chat.render(parts, false), "[user:ab]");
  for (const char* bad : {R"({"role": "user"})", R"([{"content": "x"}])", R"([{"role": "user", "content": 5}])",
                          R"([{"role": "user", "content": [{"type": "image_url"}]}])", R"(["text"])"}) {
    try {
      chat.render(ordered_json::parse(bad), true);
      FAIL() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
    }
  }
}

std::string render(std::string_view source, const char* context_json = "{}") {
  return jinja::Template(source).render(ordered_json::parse(context_json));
}

TEST(Jinja, ExpressionsFollowPythonSemantics) {
  EXPECT_EQ(render("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}"), "7 3 -4 2 3.5 1024");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none }} {{ 'ab' * 2 }} {{ [1, 2] + [3] }}"), "a1None abab [1, 2, 3]");
  EXPECT_EQ(render("{{ 1 if x else 2 }}{{ 'y' if not x }}", R"({"x": false})"), "2y");
  EXPECT_EQ(render("{{ x or 'd' }} {{ x and 'd' }}", R"({"x": ""})"), "d ");
  EXPECT_EQ(render("{{ 'b' in 'abc' }} {{ 2 not in [1, 2] }} {{ 'k' in d }}", R"({"d": {"k": 1}})"), "True False True");
  EXPECT_EQ(render("{{ s[0] }}{{ s[-1] }}{{ s[1:3] }}{{ s[::-1] }}", R"({"s": "深度求索"})"), "深索度求索求度深");
  EXPECT_EQ(render("{{ 1.0 }} {{ 0.1 + 0.2 }} {{ true }} {{ none }} {{ undefined_name }}."),
            "1.0 0.30000000000000004 True None .");
  EXPECT_EQ(render("{{ {'a': [1, 'x']} }}"), "{'a': [1, 'x']}");
}

TEST(Jinja, StatementsScopesAndLoops) {
  EXPECT_EQ(render("{% for x in xs %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}",
                   R"({"xs": ["a", "b", "c"]})"),
            "1a,2b,3c");
  EXPECT_EQ(render("{% for x in xs if x > 1 %}{{ x }}{% else %}none{% endfor %}", R"({"xs": [1, 2, 3]})"), "23");
  EXPECT_EQ(render("{% for x in [] %}{{ x }}{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", R"({"d": {"b": 1, "a": 2}})"), "b=1;a=2;");
  EXPECT_EQ(render("{% for x in range(5) %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "02");
  // A set inside a loop does not leak out; a namespace carries state across iterations.
  EXPECT_EQ(render("{% set n = 0 %}{% set ns = namespace(n=0) %}{% for x in [1, 2] %}{% set n = n + x %}"
                   "{% set ns.n = ns.n + x %}{% endfor %}{{ n }} {{ ns.n }}"),
            "0 3");
  EXPECT_EQ(render("{% if a %}A{% elif b %}B{% else %}C{% endif %}", R"({"a": 0, "b": 1})"), "B");
  EXPECT_EQ(render("{% set x %}in{{ 1 }}{% endset %}[{{ x }}]"), "[in1]");
}

TEST(Jinja, FiltersTestsAndMethods) {
  EXPECT_EQ(render("{{ xs|length }} {{ xs|join('-') }} {{ xs|first }} {{ xs|last }} {{ ' t '|trim }}|",
                   R"({"xs": ["a", "b"]})"),
            "2 a-b a b t|");
  EXPECT_EQ(render("{{ d|tojson }} {{ d|tojson(indent=2) }}", R"({"d": {"k": ["v", 1, null, "é\"\n"]}})"),
            "{\"k\": [\"v\", 1, null, \"é\\\"\\n\"]} {\n  \"k\": [\n    \"v\",\n    1,\n    null,\n    \"é\\\"\\n\"\n  ]\n}");
  EXPECT_EQ(render("{{ x is defined }} {{ y is defined }} {{ x is none }} {{ x is not none }} {{ 3 is odd }} {{ 's' is string }}",
                   R"({"x": null})"),
            "True False True False True True");
  EXPECT_EQ(render("{{ s.strip() }}|{{ s.split() }}|{{ 'a,b'.split(',') }}|{{ s.startswith(' x') }}|{{ 'abc'.replace('b', 'B') }}",
                   R"({"s": " x y "})"),
            "x y|['x', 'y']|['a', 'b']|True|aBc");
  EXPECT_EQ(render("{{ d.get('a') }} {{ d.get('z', 5) }} {{ d.get('z') }} {{ y|default('dflt') }}", R"({"d": {"a": 1}})"),
            "1 5 None dflt");
  EXPECT_EQ(render("{{ xs|selectattr('ok')|map(attribute='n')|join(',') }}",
                   R"({"xs": [{"ok": true, "n": 1}, {"ok": false, "n": 2}, {"ok": true, "n": 3}]})"),
            "1,3");
}

TEST(Jinja, WhitespaceControlTrimAndLstripBlocks) {
  EXPECT_EQ(render("a  {{- 'b' -}}  c"), "abc");
  // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before one.
  EXPECT_EQ(render("{% if true %}\n    x\n    {% endif %}\ny"), "    x\ny");
  EXPECT_EQ(render("{# comment #}\nz"), "z");
}

TEST(Jinja, ErrorsNameTheProblemAndTheLine) {
  auto expect_error = [](std::string_view source, ErrorKind kind, std::string_view fragment, const char* ctx = "{}") {
    try {
      render(source, ctx);
      ADD_FAILURE() << "no error for " << source;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error("{% macro m() %}{% endmacro %}", ErrorKind::kUnsupported, "'{% macro %}'");
  expect_error("{{ x|wordwrap }}", ErrorKind::kUnsupported, "filter 'wordwrap'");
  expect_error("line1\n{{ raise_exception('only user and assistant roles') }}", ErrorKind::kInvalidArgument,
               "line 2: the template refused the conversation: only user and assistant roles");
  expect_error("{% if x %}", ErrorKind::kInvalidArgument, "without 'endif'");
  expect_error("{{ 'a' + 1 }}", ErrorKind::kInvalidArgument, "unsupported operand types for +: string and int");
  expect_error("{{ x.y.z }}", ErrorKind::kInvalidArgument, "undefined");
  expect_error("{% set x.y = 1 %}", ErrorKind::kInvalidArgument, "namespace()", R"({"x": {}})");
  expect_error("{{ 'unterminated }}", ErrorKind::kInvalidArgument, "unterminated");
  expect_error("{{ 1 }", ErrorKind::kInvalidArgument, "unterminated tag");
  expect_error("{{ 1 ; 2 }}", ErrorKind::kInvalidArgument, "unexpected character ';'");
}

}  // namespace
}  // namespace cachalot::tokenizer
