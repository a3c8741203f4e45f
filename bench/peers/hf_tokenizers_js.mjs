// The tokenizer benchmark's peer: @huggingface/tokenizers (the JS implementation the fixture's
// reference encodings came from) encoding and decoding the same corpus file.
// Usage: node hf_tokenizers_js.mjs TOKENIZER_DIR CORPUS_FILE REPEATS
// Prints one JSON object: median encode and decode MB/s, the ids' count and an order-sensitive
// checksum (so the caller can check both tokenizers produced the same ids).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(resolve(here, "../../tools/npm/package.json"));
const { Tokenizer } = require("@huggingface/tokenizers");

const [dir, corpusPath, repeatsArg] = process.argv.slice(2);
const tokenizer = new Tokenizer(JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")),
                                JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")));
const text = readFileSync(corpusPath, "utf8");
const megabytes = Buffer.byteLength(text, "utf8") / 1e6;
const repeats = Number(repeatsArg);

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
let ids = [];
const encodeTimes = [], decodeTimes = [];
for (let r = 0; r < repeats; ++r) {
  const t0 = process.hrtime.bigint();
  ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
  const t1 = process.hrtime.bigint();
  tokenizer.decode(ids);
  const t2 = process.hrtime.bigint();
  encodeTimes.push(Number(t1 - t0) / 1e9);
  decodeTimes.push(Number(t2 - t1) / 1e9);
}
let checksum = 0;  // as the C++ side: below 2^53 at every step
for (let i = 0; i < ids.length; ++i) checksum = (checksum * 1000003 + ids[i]) % 1000000007;
process.stdout.write(JSON.stringify({
  encode_mb_s: megabytes / median(encodeTimes),
  decode_mb_s: megabytes / median(decodeTimes),
  ids: ids.length,
  checksum: checksum.toString(),
}) + "\n");
