// Regenerates references.json: chat renders by @huggingface/jinja and encodings by
// @huggingface/tokenizers (the implementations the fixture's golden.json came from) for cases the
// fixture does not cover: tool calls and outputs, several system prompts, mixed scripts.
// Run from the repository root after scripts/bootstrap:
//   node tests/tokenizer/data/make_references.mjs ../shared/fixtures/tokenizer > tests/tokenizer/data/references.json
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";

const require = createRequire(resolve("tools/npm/package.json"));
const { Template } = require("@huggingface/jinja");
const { Tokenizer } = require("@huggingface/tokenizers");

const dir = process.argv[2];
const tokenizerJson = JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8"));
const config = JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8"));
const tokenizer = new Tokenizer(tokenizerJson, config);
const template = new Template(config.chat_template);

const call = (name, args) => ({ type: "function", function: { name, arguments: JSON.stringify(args) } });
const chats = [
  [{ role: "user", content: "2+2?" }, { role: "assistant", content: "4" }],
  [
    { role: "system", content: "First system." },
    { role: "system", content: "Second system." },
    { role: "user", content: "Hi\nthere" },
  ],
  [
    { role: "user", content: "Weather in Paris and Hangzhou?" },
    { role: "assistant", content: null, tool_calls: [call("get_weather", { city: "Paris" })] },
    { role: "tool", content: "{\"temp\": 21}" },
    { role: "assistant", content: "It is 21 degrees in Paris." },
  ],
  [
    { role: "user", content: "Two lookups" },
    { role: "assistant", content: null, tool_calls: [call("a", { x: 1 }), call("b", { y: [2, 3] })] },
    { role: "tool", content: "one" },
    { role: "tool", content: "two" },
  ],
  [{ role: "user", content: "深度求索 🐳 — “quotes” & <tags>" }],
];
const out = { generator: "tests/tokenizer/data/make_references.mjs", chats: [], encodings: [] };
for (const messages of chats) {
  for (const add_generation_prompt of [true, false]) {
    const text = template.render({
      messages, add_generation_prompt, bos_token: config.bos_token.content ?? config.bos_token,
      eos_token: config.eos_token.content ?? config.eos_token,
    });
    out.chats.push({ messages, add_generation_prompt, text, ids: tokenizer.encode(text, { add_special_tokens: false }).ids });
  }
}
const texts = [
  "Numbers 1234567890 and 3.14e-10, 1,000,000.",
  "Mixed 漢字かなカナ and Hangul 한국어 and Thai ภาษาไทย.",
  "Code:\n\tif (x != y) { return x->z[0] * 2; }\r\n",
  "   \n\n  spaces   before\tand\n\n\nafter  ",
  "<｜User｜>inline special<｜Assistant｜><｜tool▁sep｜>",
  "Ω≈ç√∫˜µ≤≥÷ åß∂ƒ©˙∆˚¬… 😀👍🏽👨‍👩‍👧",
  "don't won't I'm you're they've we'll she'd",
];
for (const text of texts) out.encodings.push({ text, ids: tokenizer.encode(text, { add_special_tokens: false }).ids });
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
