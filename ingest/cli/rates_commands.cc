#include "ingest/cli/rates_commands.h"

#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include <fmt/format.h>
#include <pqxx/pqxx>

#include "ingest/cli/database_target.h"
#include "ingest/cli/exit_codes.h"
#include "ingest/rates/rates_csv.h"
#include "sinks/postgres/attribution.h"
#include "sinks/postgres/exchange_rates.h"
#include "transform/normalize/currency.h"

namespace crm::ingest::cli {

namespace {

namespace pg = crm::sinks::postgres;

// At most this many bad lines are printed (all are counted).
constexpr std::size_t max_errors_shown = 50;

struct import_rates_args {
  database_target db;
  std::string file, base = "EUR", summary = "text";
  bool dry_run = false;
};

struct reporting_args {
  database_target db;
  std::string code;
};

// An ISO 4217 code, any case; upper-cased in place.
const CLI::Validator iso4217_check(
    [](std::string& s) {
      char code[3];
      if (!transform::normalize_currency(s, code)) return "\"" + s + "\" is not an ISO 4217 currency code";
      s.assign(code, 3);
      return std::string();
    },
    "ISO4217");

bool read_all(const std::string& path, std::string& out) {
  if (path == "-") {
    out.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    return !std::cin.bad();
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream s;
  s << f.rdbuf();
  out = std::move(s).str();
  return !f.bad();
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out.append(out.empty() ? "" : ",").append(s);
  return out;
}

int run_import_rates(import_rates_args& a) {
  std::string text;
  if (!read_all(a.file, text)) {
    std::cerr << "error: cannot read " << a.file << "\n";
    return exit_input;
  }
  const auto parsed = rates::parse_rates_csv(text, a.file == "-" ? "stdin" : a.file, a.base);
  if (!parsed.errors.empty()) {
    for (std::size_t i = 0; i < parsed.errors.size() && i < max_errors_shown; ++i) {
      std::cerr << "error: " << parsed.errors[i] << "\n";
    }
    if (parsed.errors.size() > max_errors_shown) {
      std::cerr << fmt::format("error: ... and {} more\n", parsed.errors.size() - max_errors_shown);
    }
    std::cerr << fmt::format("error: {}: {} bad line(s); nothing was written (fix them and run the import again)\n",
                             a.file, parsed.errors.size());
    return exit_input;
  }
  std::vector<pg::rate_input> rates;
  rates.reserve(parsed.quotes.size());
  std::string first, last;
  for (const auto& q : parsed.quotes) {
    rates.push_back({q.day, q.currency, q.rate});
    if (first.empty() || q.day < first) first = q.day;
    if (last.empty() || q.day > last) last = q.day;
  }
  pg::rates_write_result w;
  std::string reporting;
  if (!a.dry_run) {
    pqxx::connection conn(a.db.resolve(true));
    w = pg::write_exchange_rates(conn, a.base, rates);
    reporting = pg::read_reporting_currency(conn);
  }
  if (a.summary == "json") {
    std::cout << fmt::format(
        "{{\"format\":\"{}\",\"lines\":{},\"rates\":{},\"not_quoted\":{},\"base\":\"{}\",\"first_day\":\"{}\","
        "\"last_day\":\"{}\",\"inserted\":{},\"updated\":{},\"unchanged\":{},\"changed_currencies\":\"{}\","
        "\"conversions_refreshed\":{},\"reporting_currency\":\"{}\",\"dry_run\":{}}}\n",
        parsed.format, parsed.data_lines, rates.size(), parsed.not_quoted, a.base, first, last, w.inserted, w.updated,
        w.unchanged, join(w.currencies), w.conversions_refreshed, reporting, a.dry_run ? "true" : "false");
    return exit_ok;
  }
  std::cout << fmt::format("read {} lines ({} form): {} rates against {}{}, {} cells not quoted (N/A)\n",
                           parsed.data_lines, parsed.format, rates.size(), a.base,
                           rates.empty() ? "" : fmt::format(" from {} to {}", first, last), parsed.not_quoted);
  if (a.dry_run) {
    std::cout << "dry run: nothing written\n";
    return exit_ok;
  }
  std::cout << fmt::format("{} inserted, {} updated, {} unchanged\n", w.inserted, w.updated, w.unchanged);
  if (!w.currencies.empty()) {
    std::cout << fmt::format("changed: {} ({} currencies) from {} to {}\n", join(w.currencies), w.currencies.size(),
                             w.first_day, w.last_day);
  }
  std::cout << fmt::format("{} conversions re-converted into {} (the reporting currency)\n", w.conversions_refreshed,
                           reporting);
  return exit_ok;
}

int run_reporting_currency(reporting_args& a) {
  pqxx::connection conn(a.db.resolve(true));
  const std::string before = pg::read_reporting_currency(conn);
  const auto r = pg::recompute_analytics(conn, {}, a.code);
  std::cout << fmt::format("reporting currency {} (was {}); recomputed: {} conversions, {} credit rows, {} A/B units\n",
                           r.reporting_currency, before, r.conversions, r.credit_rows, r.ab_units);
  return exit_ok;
}

int run_status(database_target& db) {
  pqxx::connection conn(db.resolve(true));
  std::cout << "reporting currency " << pg::read_reporting_currency(conn) << "\n";
  const auto loaded = pg::read_rates_coverage(conn);
  if (loaded.empty()) std::cout << "no exchange rates loaded\n";
  for (const auto& c : loaded) {
    std::cout << fmt::format("rates {}->{}: {} days from {} to {}\n", c.base, c.currency, c.days, c.first_day,
                             c.last_day);
  }
  const auto awaiting = pg::read_awaiting_rates(conn, "", "");
  if (awaiting.empty()) std::cout << "no conversion awaits a rate\n";
  for (const auto& w : awaiting) {
    std::cout << fmt::format("awaiting a rate: {} conversions in {} from {} to {}\n", w.conversions,
                             w.currency.empty() ? "(no currency)" : w.currency, w.first_day, w.last_day);
  }
  return exit_ok;
}

}  // namespace

void add_rates_commands(CLI::App& app, int& exit_code) {
  auto* rates_cmd = app.add_subcommand(
      "rates", "Exchange rates: conversion revenue is reported in the reporting currency, converted at the rate of "
               "the conversion's day (UTC) or the last known rate before it");
  rates_cmd->require_subcommand(1);

  auto imp = std::make_shared<import_rates_args>();
  auto* import_cmd = rates_cmd->add_subcommand(
      "import",
      "Load exchange rates from a CSV file: the ECB's reference rates (eurofxref-hist.csv, or the daily "
      "eurofxref.csv; `N/A` = not quoted) or a long form with the header date,currency,rate. All or nothing: a "
      "file with a bad line is refused whole (each bad line is named with file:line; exit code 1). Rates are "
      "upserted in one transaction, then the conversions they convert are re-attributed");
  imp->db.add_options(*import_cmd, false);
  import_cmd->add_option("file", imp->file, "The CSV file ('-' reads standard input)")->required();
  import_cmd->add_option("--base", imp->base, "The currency the rates are quoted against (1 BASE = rate CURRENCY)")
      ->default_str("EUR")
      ->transform(iso4217_check);
  import_cmd->add_flag("--dry-run", imp->dry_run, "Check and count the file; write nothing");
  import_cmd->add_option("--summary", imp->summary, "Summary format")
      ->default_str("text")
      ->check(CLI::IsMember({"text", "json"}));
  import_cmd->callback([imp, &exit_code] { exit_code = run_import_rates(*imp); });

  auto rep = std::make_shared<reporting_args>();
  auto* rep_cmd = rates_cmd->add_subcommand(
      "reporting-currency",
      "Set the reporting currency (stored in the database, default USD) and recompute every attribution and A/B "
      "table in it (one transaction, like `report attribution --recompute`)");
  rep->db.add_options(*rep_cmd, false);
  rep_cmd->add_option("code", rep->code, "ISO 4217 code, e.g. EUR")->required()->transform(iso4217_check);
  rep_cmd->callback([rep, &exit_code] { exit_code = run_reporting_currency(*rep); });

  auto status_db = std::make_shared<database_target>();
  auto* status_cmd = rates_cmd->add_subcommand(
      "status", "The reporting currency, the rates loaded (per base and currency) and the conversions awaiting a rate");
  status_db->add_options(*status_cmd, false);
  status_cmd->callback([status_db, &exit_code] { exit_code = run_status(*status_db); });
}

}  // namespace crm::ingest::cli
