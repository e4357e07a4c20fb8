#include "transform/normalize/record_splitter.h"

#include <gtest/gtest.h>

#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "tests/transform/test_names.h"

namespace crm::transform {
namespace {

struct rec {
  std::string text;
  std::uint64_t line = 0;
  std::string error;
  bool operator==(const rec&) const = default;
};

void PrintTo(const rec& r, std::ostream* os) {
  *os << "{line " << r.line << ", \"" << r.text << "\"";
  if (!r.error.empty()) *os << ", error \"" << r.error << "\"";
  *os << "}";
}

// Feeds `input` cut at `cuts` (ascending offsets) and finishes.
std::vector<rec> split(std::string_view input, const std::vector<std::size_t>& cuts,
                       input_format format = input_format::auto_detect, std::size_t max = 1 << 20) {
  record_splitter splitter(format, max);
  std::vector<rec> out;
  auto on_record = [&](const split_record& r) { out.push_back({std::string(r.text), r.line, std::string(r.error)}); };
  std::size_t from = 0;
  for (const std::size_t cut : cuts) {
    splitter.feed(input.substr(from, cut - from), on_record);
    from = cut;
  }
  splitter.feed(input.substr(from), on_record);
  splitter.finish(on_record);
  return out;
}

std::vector<rec> split_whole(std::string_view input, input_format format = input_format::auto_detect,
                             std::size_t max = 1 << 20) {
  return split(input, {}, format, max);
}

const std::string not_object{split_reason::not_object};
const std::string no_separator{split_reason::no_separator};
const std::string empty_element{split_reason::empty_element};
const std::string unterminated{split_reason::unterminated};
const std::string truncated{split_reason::truncated};
const std::string after_close{split_reason::after_close};

struct framing_case {
  const char* name;
  std::string input;
  input_format format;
  std::size_t max;
  std::vector<rec> expected;
};

const std::vector<framing_case>& framing_cases() {
  static const std::vector<framing_case> cases = {
      {"ndjson lines, blank lines, CRLF",
       "{\"a\":1}\n\n{\"b\":2}\r\n  \t\r\n{\"c\":3}",
       input_format::auto_detect,
       1 << 20,
       {{"{\"a\":1}", 1, ""}, {"{\"b\":2}", 3, ""}, {"{\"c\":3}", 5, ""}}},
      {"ndjson leading blank lines and spaces",
       "\n\r\n   {\"a\":1}  \n",
       input_format::auto_detect,
       1 << 20,
       {{"   {\"a\":1}  ", 3, ""}}},
      {"ndjson final line with CR and no LF", "{\"a\":1}\n{\"b\":2}\r", input_format::ndjson, 1 << 20,
       {{"{\"a\":1}", 1, ""}, {"{\"b\":2}", 2, ""}}},
      {"ndjson garbage lines are records", "not json\n[1,2]\n", input_format::auto_detect, 1 << 20,
       {{"not json", 1, ""}, {"[1,2]", 2, ""}}},
      {"explicit ndjson with an array", "[{\"a\":1}]\n", input_format::ndjson, 1 << 20, {{"[{\"a\":1}]", 1, ""}}},
      {"bom", "\xEF\xBB\xBF{\"a\":1}\n", input_format::auto_detect, 1 << 20, {{"{\"a\":1}", 1, ""}}},
      {"bom before an array", "\xEF\xBB\xBF[{\"a\":1}]", input_format::auto_detect, 1 << 20, {{"{\"a\":1}", 1, ""}}},
      {"half a bom is data", "\xEF\xBB{\"a\":1}\n", input_format::auto_detect, 1 << 20, {{"\xEF\xBB{\"a\":1}", 1, ""}}},
      {"ndjson oversized line reported once", "{\"a\":\"0123456789abcdef\"}\n{\"b\":1}\n", input_format::auto_detect, 16,
       {{"{\"a\":\"0123456789", 1, "record exceeds 16 bytes"}, {"{\"b\":1}", 2, ""}}},
      {"ndjson line of exactly the limit", "{\"a\":\"01234567\"}\r\n{\"a\":\"012345678\"}\n", input_format::ndjson, 16,
       {{"{\"a\":\"01234567\"}", 1, ""}, {"{\"a\":\"012345678\"", 2, "record exceeds 16 bytes"}}},
      {"ndjson oversized last line", "{}\n{\"a\":\"0123456789abcdef\"}", input_format::ndjson, 16,
       {{"{}", 1, ""}, {"{\"a\":\"0123456789", 2, "record exceeds 16 bytes"}}},
      {"array with line numbers and tricky strings",
       "[\n {\"a\":1},\n {\"b\":\"x}]\\\"{\\\\\"},\n\n{\"c\":{\"d\":[1,{}]}}\n]\n",
       input_format::auto_detect,
       1 << 20,
       {{"{\"a\":1}", 2, ""}, {"{\"b\":\"x}]\\\"{\\\\\"}", 3, ""}, {"{\"c\":{\"d\":[1,{}]}}", 5, ""}}},
      {"array with bad elements",
       "[1, {\"a\":1}, \"s,]\", [2,{}], {\"b\":2} x , {\"c\":3}, null]",
       input_format::auto_detect,
       1 << 20,
       {{"1", 1, not_object},
        {"{\"a\":1}", 1, ""},
        {"\"s,]\"", 1, not_object},
        {"[2,{}]", 1, not_object},
        {"{\"b\":2}", 1, ""},
        {"x", 1, no_separator},
        {"{\"c\":3}", 1, ""},
        {"null", 1, not_object}}},
      {"array missing a comma", "[{\"a\":1} {\"b\":2}]", input_format::json_array, 1 << 20,
       {{"{\"a\":1}", 1, ""}, {"{\"b\":2}", 1, no_separator}}},
      {"array empty elements", "[{\"a\":1},,{\"b\":2},]", input_format::auto_detect, 1 << 20,
       {{"{\"a\":1}", 1, ""}, {"", 1, empty_element}, {"{\"b\":2}", 1, ""}, {"", 1, empty_element}}},
      {"empty array", " [ ] \n", input_format::auto_detect, 1 << 20, {}},
      {"array missing ]", "[{\"a\":1}\n", input_format::auto_detect, 1 << 20,
       {{"{\"a\":1}", 1, ""}, {"", 2, unterminated}}},
      {"array truncated element", "[{\"a\":1},\n{\"b\":\"x", input_format::auto_detect, 1 << 20,
       {{"{\"a\":1}", 1, ""}, {"{\"b\":\"x", 2, truncated}}},
      {"array truncated junk", "[{\"a\":1}, 12", input_format::auto_detect, 1 << 20,
       {{"{\"a\":1}", 1, ""}, {"12", 1, not_object}, {"", 1, unterminated}}},
      {"content after ]", "[{\"a\":1}]\n x y\n", input_format::auto_detect, 1 << 20,
       {{"{\"a\":1}", 1, ""}, {"x y", 2, after_close}}},
      // Concatenated arrays (`cat a.json b.json`): the second one's records were one dead letter cut to the limit.
      {"concatenated arrays", "[{\"a\":1}]\n[{\"b\":2},\n{\"c\":3}] [] [{\"d\":4}] x", input_format::json_array,
       1 << 20, {{"{\"a\":1}", 1, ""}, {"{\"b\":2}", 2, ""}, {"{\"c\":3}", 3, ""}, {"{\"d\":4}", 3, ""}, {"x", 3, after_close}}},
      {"array oversized element", "[{\"a\":\"0123456789abcdef\"},\n{\"b\":1}]", input_format::auto_detect, 16,
       {{"{\"a\":\"0123456789", 1, "record exceeds 16 bytes"}, {"{\"b\":1}", 2, ""}}},
      {"array element of exactly the limit", "[{\"a\":\"01234567\"}]", input_format::auto_detect, 16,
       {{"{\"a\":\"01234567\"}", 1, ""}}},
      {"explicit array without [", "{\"a\":1}\n{\"b\":2}\n", input_format::json_array, 1 << 20,
       {{"{\"a\":1}\n{\"b\":2}", 1, "expected '[' to open a JSON array"}}},
      {"empty input", "", input_format::auto_detect, 1 << 20, {}},
      {"whitespace only", " \n\r\n\t", input_format::auto_detect, 1 << 20, {}},
  };
  return cases;
}

class Framing : public ::testing::TestWithParam<std::size_t> {};

TEST_P(Framing, WholeInput) {
  const framing_case& c = framing_cases()[GetParam()];
  EXPECT_EQ(split_whole(c.input, c.format, c.max), c.expected) << c.name;
}

// Every chunking gives the same records: cut at every offset, at every pair of offsets, one byte at a time.
TEST_P(Framing, AnyChunking) {
  const framing_case& c = framing_cases()[GetParam()];
  const std::string& in = c.input;
  for (std::size_t k = 0; k <= in.size(); ++k) {
    ASSERT_EQ(split(in, {k}, c.format, c.max), c.expected) << c.name << ", cut at " << k;
  }
  for (std::size_t i = 0; i <= in.size(); ++i) {
    for (std::size_t j = i; j <= in.size(); ++j) {
      ASSERT_EQ(split(in, {i, j}, c.format, c.max), c.expected) << c.name << ", cuts at " << i << ", " << j;
    }
  }
  std::vector<std::size_t> every_byte;
  for (std::size_t k = 1; k < in.size(); ++k) every_byte.push_back(k);
  EXPECT_EQ(split(in, every_byte, c.format, c.max), c.expected) << c.name << ", 1-byte chunks";
}

INSTANTIATE_TEST_SUITE_P(Splitter, Framing, ::testing::Range<std::size_t>(0, 26),
                         [](const ::testing::TestParamInfo<std::size_t>& info) {
                           return test_support::test_name(framing_cases()[info.param].name);
                         });

TEST(Splitter, CaseCountMatches) { EXPECT_EQ(framing_cases().size(), 26u); }

TEST(Splitter, DetectsTheFormat) {
  record_splitter a;
  a.feed(" \n [", [](const split_record&) {});
  EXPECT_EQ(a.format(), input_format::json_array);
  record_splitter b;
  b.feed("\xEF\xBB\xBF{}", [](const split_record&) {});
  EXPECT_EQ(b.format(), input_format::ndjson);
  record_splitter c;
  c.feed("   ", [](const split_record&) {});
  EXPECT_EQ(c.format(), input_format::auto_detect);
}

TEST(Splitter, RecordsInsideAChunkAreViewsIntoIt) {
  const std::string chunk1 = "{\"a\":1}\n{\"b\"";
  const std::string chunk2 = ":2}\n{\"c\":3}\n";
  record_splitter splitter;
  std::vector<bool> inside;
  const std::string* current = nullptr;
  auto on_record = [&](const split_record& r) {
    inside.push_back(r.text.data() >= current->data() && r.text.data() < current->data() + current->size());
  };
  current = &chunk1;
  splitter.feed(chunk1, on_record);
  current = &chunk2;
  splitter.feed(chunk2, on_record);
  splitter.finish(on_record);
  EXPECT_EQ(inside, (std::vector<bool>{true, false, true}));  // the straddling one is carried
}

TEST(Splitter, HugeLineStaysBounded) {
  // A 16 MiB line with a 1 KiB limit, fed in 64 KiB chunks: one error, then the next line is fine.
  const std::size_t max = 1024;
  record_splitter splitter(input_format::ndjson, max);
  std::vector<rec> out;
  auto on_record = [&](const split_record& r) {
    EXPECT_LE(r.text.size(), max);
    out.push_back({std::string(r.text), r.line, std::string(r.error)});
  };
  const std::string chunk(64 * 1024, 'x');
  for (int i = 0; i < 256; ++i) splitter.feed(chunk, on_record);
  splitter.feed("\n{\"ok\":true}\n", on_record);
  splitter.finish(on_record);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], (rec{std::string(max, 'x'), 1, "record exceeds 1024 bytes"}));
  EXPECT_EQ(out[1], (rec{"{\"ok\":true}", 2, ""}));
  EXPECT_EQ(splitter.lines_seen(), 3u);
}

TEST(Splitter, HugeArrayElementStaysBounded) {
  const std::size_t max = 1024;
  record_splitter splitter(input_format::auto_detect, max);
  std::vector<rec> out;
  auto on_record = [&](const split_record& r) { out.push_back({std::string(r.text), r.line, std::string(r.error)}); };
  splitter.feed("[{\"a\":\"", on_record);
  const std::string chunk(64 * 1024, 'y');
  for (int i = 0; i < 64; ++i) splitter.feed(chunk, on_record);
  splitter.feed("\"},\n{\"b\":1}]", on_record);
  splitter.finish(on_record);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].error, "record exceeds 1024 bytes");
  EXPECT_EQ(out[0].text, "{\"a\":\"" + std::string(max - 6, 'y'));
  EXPECT_EQ(out[1], (rec{"{\"b\":1}", 2, ""}));
}

// Random bytes from a JSON-ish alphabet, cut at random places: always the same records as one whole feed.
TEST(Splitter, RandomInputAnyChunking) {
  const std::string alphabet = "{}[]\",:\\ \n\r\tab1\xef\xbb\xbf";
  std::mt19937_64 rng(7);
  for (int i = 0; i < 3000; ++i) {
    std::string input;
    const std::size_t size = rng() % 60;
    for (std::size_t k = 0; k < size; ++k) input.push_back(alphabet[rng() % alphabet.size()]);
    if (rng() % 2) input.insert(0, "[");
    const input_format format = static_cast<input_format>(rng() % 3);
    const std::size_t max = 4 + rng() % 20;
    const std::vector<rec> whole = split_whole(input, format, max);
    for (const rec& r : whole) ASSERT_LE(r.text.size(), max);
    std::vector<std::size_t> cuts;
    for (std::size_t k = 0; k < input.size(); k += 1 + rng() % 5) cuts.push_back(k);
    ASSERT_EQ(split(input, cuts, format, max), whole) << input;
  }
}

TEST(Splitter, ManyRecordsAcrossChunks) {
  std::string input;
  std::vector<rec> expected;
  for (int i = 0; i < 1000; ++i) {
    const std::string line = "{\"i\":" + std::to_string(i) + ",\"s\":\"" + std::string(i % 37, 'z') + "\"}";
    input += line + (i % 3 == 0 ? "\r\n" : "\n");
    expected.push_back({line, static_cast<std::uint64_t>(i + 1), ""});
  }
  for (const std::size_t chunk : {1u, 7u, 64u, 4096u}) {
    std::vector<std::size_t> cuts;
    for (std::size_t k = chunk; k < input.size(); k += chunk) cuts.push_back(k);
    EXPECT_EQ(split(input, cuts), expected) << "chunk " << chunk;
  }
  std::string array = "[";
  for (std::size_t i = 0; i < expected.size(); ++i) array += (i ? ",\n" : "\n") + expected[i].text;
  array += "\n]";
  std::vector<rec> expected_array = expected;
  for (auto& r : expected_array) r.line += 1;
  for (const std::size_t chunk : {1u, 13u, 4096u}) {
    std::vector<std::size_t> cuts;
    for (std::size_t k = chunk; k < array.size(); k += chunk) cuts.push_back(k);
    EXPECT_EQ(split(array, cuts), expected_array) << "chunk " << chunk;
  }
}

}  // namespace
}  // namespace crm::transform
