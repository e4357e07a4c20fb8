// Gzip input of `crm-ingest import`: several members one after the other are one stream; anything else after a
// member fails the file (exit 1) with where it starts, after the records before it are stored. zlib's gzread,
// which import used before, ignores what follows a member when it is not one ("trailing garbage"): the events
// there were lost without a word (exit 0, "files_failed":0). Other compressed input (bzip2, xz, zstd) and zip
// archives are refused by their magic bytes: their bytes became dead letters of garbage, the run exiting 0.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <gtest/gtest.h>
#include <zlib.h>

#include "ingest/import/file_source.h"
#include "support/run_command.h"
#include "support/scratch.h"
#include "support/test_db.h"

#include <unistd.h>

namespace fs = std::filesystem;

namespace {

// `n` NDJSON events, each line ending in a newline; their provider_message_id is `prefix`-0, `prefix`-1, ...
std::string events(const std::string& prefix, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    out += fmt::format(R"({{"kind":"communication","occurred_at":"2026-11-02T09:00:00Z","channel":"email",)"
                       R"("status":"sent","email":"a@b.co","provider_message_id":"{}-{}"}})",
                       prefix, i) +
           "\n";
  }
  return out;
}

// `text` as one gzip member.
std::string gzip(const std::string& text) {
  z_stream s{};
  if (deflateInit2(&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("deflateInit2 failed");
  }
  std::string out(deflateBound(&s, static_cast<uLong>(text.size())), '\0');
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  s.avail_in = static_cast<uInt>(text.size());
  s.next_out = reinterpret_cast<Bytef*>(out.data());
  s.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&s, Z_FINISH);
  out.resize(s.total_out);
  deflateEnd(&s);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate did not finish");
  return out;
}

std::string write_file(const std::string& dir, const std::string& name, const std::string& bytes) {
  const auto path = (crm_test::scratch(dir) / name).string();
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

long long stored(const std::string& dsn, const std::string& prefix) {
  return crm_test::count(dsn, "SELECT count(*) FROM communications WHERE provider_message_id LIKE '" + prefix + "-%'");
}

std::string import_args(const std::string& dsn) { return "import --no-progress --summary json --dsn '" + dsn + "' "; }

// A file of `first` (a gzip member of 3 events "first-N") and `trailing`: the 3 events stored, the trailing bytes
// refused with where they start and how many they are, the run failed.
void expect_failed_after_first_member(const std::string& name, const std::string& first, const std::string& trailing) {
  const auto dsn = crm_test::fresh_database("t_gz_" + name);
  const auto path = write_file(name, "events.ndjson.gz", first + trailing);
  const auto r = crm_test::run_ingest(import_args(dsn) + path);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("A file could not be read to its end; the records before the error are imported"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(fmt::format("cannot read {}: {} bytes after the gzip stream at byte {} are not a gzip member",
                                   path, trailing.size(), first.size())),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(R"("read":3,)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(R"("files_failed":1,)"), std::string::npos) << r.out;
  EXPECT_EQ(stored(dsn, "first"), 3);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 3);
}

TEST(Import, TwoGzipMembersOneAfterTheOtherAreReadAsOneFile) {
  const auto dsn = crm_test::fresh_database("t_gz_two_members");
  const auto path = write_file("two-members", "events.ndjson.gz", gzip(events("first", 3)) + gzip(events("second", 3)));
  const auto r = crm_test::run_ingest(import_args(dsn) + path);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find(R"("read":6,"inserted":6,)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(R"("files_failed":0,)"), std::string::npos) << r.out;
  EXPECT_EQ(stored(dsn, "first"), 3);
  EXPECT_EQ(stored(dsn, "second"), 3);
}

// An empty member (gzip of nothing, 20 bytes) is a member like any other: alone it is an empty file, between two
// members it adds nothing.
TEST(Import, AnEmptyGzipMemberIsAnEmptyStretchOfTheFile) {
  const std::string empty = gzip("");
  ASSERT_EQ(empty.size(), 20u);
  const auto dsn = crm_test::fresh_database("t_gz_empty_member");
  const auto alone = write_file("empty-member", "empty.ndjson.gz", empty);
  const auto between = write_file("empty-between", "events.ndjson.gz",
                                  gzip(events("first", 3)) + empty + gzip(events("second", 3)) + empty);
  const auto r = crm_test::run_ingest(import_args(dsn) + alone + " " + between);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find(R"("read":6,)"), std::string::npos) << r.out;
  EXPECT_EQ(stored(dsn, "first"), 3);
  EXPECT_EQ(stored(dsn, "second"), 3);
}

// (a) Plain NDJSON lines appended to a .gz file.
TEST(Import, PlainLinesAfterAGzipMemberFailTheFileAndSayWhere) {
  expect_failed_after_first_member("plain-after", gzip(events("first", 3)), events("plain", 3));
}

// (b) A second member whose magic byte is damaged.
TEST(Import, AGzipMemberWithADamagedMagicByteFailsTheFileAndSaysWhere) {
  std::string second = gzip(events("second", 3));
  second[1] = '\x8c';
  expect_failed_after_first_member("bad-magic", gzip(events("first", 3)), second);
}

// (c) Zero padding between two members: a member does not follow the first one.
TEST(Import, ZeroBytesBetweenGzipMembersFailTheFileAndSayWhere) {
  expect_failed_after_first_member("zeros-between", gzip(events("first", 3)),
                                   std::string(512, '\0') + gzip(events("second", 3)));
}

// Standard input from a pipe: members one after the other are read; what is not a member after them fails the
// run (its size is unknown: where it starts is said).
TEST(Import, PipedGzipIsReadMemberByMemberAndTrailingDataFailsIt) {
  const auto dsn = crm_test::fresh_database("t_gz_stdin");
  const std::string first = gzip(events("first", 3));
  const auto good = write_file("stdin-good", "good.gz", first + gzip(events("second", 3)));
  const auto bad = write_file("stdin-bad", "bad.gz", first + events("plain", 3));
  auto piped = [&](const std::string& file) {
    return crm_test::run_command("cat " + crm_test::shell_quote(file) + " | CRM_INGEST_POSTGRES_ALLOW_SUPERUSER=true " +
                                 CRM_INGEST_EXE + " " + import_args(dsn) + "- 2>&1");
  };
  const auto r = piped(good);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(stored(dsn, "second"), 3);
  const auto failed = piped(bad);
  EXPECT_EQ(failed.status, 1) << failed.out;
  EXPECT_NE(failed.out.find(fmt::format("cannot read -: what follows the gzip stream at byte {} is not a gzip member",
                                        first.size())),
            std::string::npos)
      << failed.out;
  EXPECT_EQ(stored(dsn, "plain"), 0);
}

// Compressed input import does not read and zip archives: refused by their magic bytes, the file failed (exit 1,
// files_failed) with the format and the command that decompresses it, nothing of it stored, the other files of the
// run imported; through standard input the same.
struct foreign_case {
  const char* name;
  std::string magic;
  const char* what;
  const char* undo;
  const char* command;
};

void PrintTo(const foreign_case& c, std::ostream* os) { *os << c.name; }

class ForeignInput : public ::testing::TestWithParam<foreign_case> {};

TEST_P(ForeignInput, IsRefusedWithItsFormatAndNothingOfItIsStored) {
  const auto& c = GetParam();
  const auto dsn = crm_test::fresh_database(std::string("t_foreign_") + c.name);
  // The magic, bytes as a compressor writes them, and lines that would be read if the file were taken for text.
  const auto path = write_file(std::string("foreign-") + c.name, "events.ndjson",
                               c.magic + std::string("\x01\x00\xff binary\n", 11) + events("inside", 3));
  const auto good = write_file(std::string("foreign-good-") + c.name, "good.ndjson", events("good", 2));
  const auto r = crm_test::run_ingest(import_args(dsn) + path + " " + good);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find(fmt::format("cannot read {0}: {1}: {2} it first, or pipe it: {3} {0} | crm-ingest import -",
                                   path, c.what, c.undo, c.command)),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(R"("files_failed":1,)"), std::string::npos) << r.out;
  EXPECT_EQ(stored(dsn, "inside"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 0);
  EXPECT_EQ(stored(dsn, "good"), 2);

  const auto piped = crm_test::run_command("CRM_INGEST_POSTGRES_ALLOW_SUPERUSER=true " + std::string(CRM_INGEST_EXE) +
                                           " " + import_args(dsn) + "- < " + crm_test::shell_quote(path) + " 2>&1");
  EXPECT_EQ(piped.status, 1) << piped.out;
  EXPECT_NE(piped.out.find(fmt::format("cannot read -: standard input is {}: {} it before the pipe: {} FILE | "
                                       "crm-ingest import -",
                                       c.what, c.undo, c.command)),
            std::string::npos)
      << piped.out;
  EXPECT_EQ(stored(dsn, "inside"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Import, ForeignInput,
    ::testing::Values(foreign_case{"bzip2", "BZh9", "compressed with bzip2", "decompress", "bzip2 -dc"},
                      foreign_case{"xz", std::string("\xFD" "7zXZ\0", 6), "compressed with xz", "decompress", "xz -dc"},
                      foreign_case{"zstd", "\x28\xB5\x2F\xFD", "compressed with zstd", "decompress", "zstd -dc"},
                      foreign_case{"zip", "PK\x03\x04", "a zip archive", "extract", "unzip -p"}),
    [](const auto& info) { return std::string(info.param.name); });

// Text is never taken for a format it only begins like: "BZh" without bzip2's block-size digit, or a short input
// that is all of a magic's first bytes, is read as it is.
TEST(FileSource, TextThatBeginsLikeAMagicIsReadAsItIs) {
  for (const std::string& text : {std::string("BZh is not bzip2\n"), std::string("PK"), std::string("\xFD" "7z", 3)}) {
    crm::ingest::file_source src(write_file("magic-prefix", "text.ndjson", text));
    std::string got(64, '\0');
    got.resize(src.read(got.data(), got.size()));
    EXPECT_EQ(got, text);
  }
  crm::ingest::file_source bz(write_file("magic-bzip2", "events.bz2", "BZh91AY&SY"));
  char buf[16];
  EXPECT_THROW(bz.read(buf, sizeof buf), crm::ingest::refused_input);
}

// The progress line's figure: consumed() counts the compressed bytes taken, up to the file's size at the end, and
// stops where the data that is not a member starts.
TEST(FileSource, ConsumedCountsTheCompressedBytesReadAndStopsAtTrailingData) {
  const std::string first = gzip(events("first", 300)), second = gzip(events("second", 300));
  auto read_all = [](crm::ingest::file_source& src, std::string& text) {
    std::vector<char> buf(1000);
    for (std::size_t n; (n = src.read(buf.data(), buf.size())) > 0;) text.append(buf.data(), n);
  };
  {
    crm::ingest::file_source src(write_file("consumed-good", "good.gz", first + second));
    EXPECT_EQ(src.consumed(), 0u);
    std::string text;
    read_all(src, text);
    EXPECT_EQ(text, events("first", 300) + events("second", 300));
    EXPECT_EQ(src.consumed(), first.size() + second.size());
    EXPECT_EQ(src.size(), first.size() + second.size());
  }
  {
    crm::ingest::file_source src(write_file("consumed-bad", "bad.gz", first + "\n"));
    std::string text;
    EXPECT_THROW(read_all(src, text), std::runtime_error);
    EXPECT_EQ(text, events("first", 300)) << "what was decoded before the error is handed over";
    EXPECT_EQ(src.consumed(), first.size());
    EXPECT_THROW(read_all(src, text), std::runtime_error) << "the error stays";
  }
  {
    const auto plain = events("plain", 10);
    crm::ingest::file_source src(write_file("consumed-plain", "plain.ndjson", plain));
    std::string text;
    read_all(src, text);
    EXPECT_EQ(text, plain);
    EXPECT_EQ(src.consumed(), plain.size());
  }
}

// A pipe that goes quiet: a read ends at its deadline (read_idle) with nothing lost, even in the middle of a gzip
// member, and the next read goes on. A regular file's reads never end at a deadline.
TEST(FileSource, AReadOfAQuietPipeEndsAtItsDeadlineAndTheNextGoesOn) {
  using clock = crm::ingest::file_source::clock;
  const std::string first = gzip(events("first", 3)), second = gzip(events("second", 3));
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  crm::ingest::file_source src("/proc/self/fd/" + std::to_string(fds[0]));
  ::close(fds[0]);
  const std::string sent = first + second.substr(0, 12);
  ASSERT_EQ(::write(fds[1], sent.data(), sent.size()), static_cast<ssize_t>(sent.size()));
  std::string text, buf(1 << 16, '\0');
  text.append(buf.data(), src.read(buf.data(), buf.size(), clock::now() + std::chrono::milliseconds(100)));
  EXPECT_EQ(text, events("first", 3));
  const auto t0 = clock::now();
  EXPECT_THROW(src.read(buf.data(), buf.size(), t0 + std::chrono::milliseconds(100)), crm::ingest::read_idle);
  EXPECT_GE(clock::now() - t0, std::chrono::milliseconds(100));
  EXPECT_LT(clock::now() - t0, std::chrono::seconds(2));
  const std::string rest = second.substr(12);
  ASSERT_EQ(::write(fds[1], rest.data(), rest.size()), static_cast<ssize_t>(rest.size()));
  ::close(fds[1]);
  text.clear();
  for (std::size_t n; (n = src.read(buf.data(), buf.size(), clock::now())) > 0;) text.append(buf.data(), n);
  EXPECT_EQ(text, events("second", 3));
  crm::ingest::file_source file(write_file("deadline-file", "e.ndjson", events("file", 2)));
  EXPECT_EQ(file.read(buf.data(), buf.size(), clock::now() - std::chrono::seconds(1)), events("file", 2).size());
}

}  // namespace
