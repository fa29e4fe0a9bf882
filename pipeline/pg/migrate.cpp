#include "herald/pg/migrate.hpp"

#include <algorithm>

#include "herald/common/embedded.hpp"
#include "herald/common/errors.hpp"

namespace herald::pg {

std::unique_ptr<pqxx::connection> Connect(const std::string& url) {
  try {
    return std::make_unique<pqxx::connection>(url);
  } catch (const pqxx::broken_connection& e) {
    throw TransientError(std::string("cannot connect to PostgreSQL: ") + e.what());
  }
}

std::vector<Migration> BuiltinMigrations() {
  std::vector<Migration> out;
  for (const auto& f : embedded::Migrations()) {
    std::string name(f.path);
    auto underscore = name.find('_');
    int version = 0;
    try {
      version = std::stoi(name.substr(0, underscore));
    } catch (const std::exception&) {
      throw ConfigError("migration " + name + " must be named NNNN_description.sql");
    }
    out.push_back({version, name, std::string(f.content)});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.version < b.version; });
  for (std::size_t i = 1; i < out.size(); ++i) {
    if (out[i].version == out[i - 1].version) {
      throw ConfigError("two migrations share version " + std::to_string(out[i].version));
    }
  }
  return out;
}

std::vector<std::string> Migrate(pqxx::connection& conn, const std::vector<Migration>& migrations) {
  constexpr long kLockId = 0x4865726c64;  // "Herld"
  {
    pqxx::nontransaction tx(conn);
    tx.exec("SELECT pg_advisory_lock(" + std::to_string(kLockId) + ")");
    tx.exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())");
  }
  std::vector<std::string> applied;
  try {
    for (const auto& m : migrations) {
      pqxx::work tx(conn);
      auto r = tx.exec_params("SELECT 1 FROM schema_migrations WHERE version = $1", m.version);
      if (!r.empty()) continue;
      tx.exec(m.sql);
      tx.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                     m.name);
      tx.commit();
      applied.push_back(m.name);
    }
  } catch (...) {
    pqxx::nontransaction tx(conn);
    tx.exec("SELECT pg_advisory_unlock(" + std::to_string(kLockId) + ")");
    throw;
  }
  pqxx::nontransaction tx(conn);
  tx.exec("SELECT pg_advisory_unlock(" + std::to_string(kLockId) + ")");
  return applied;
}

}  // namespace herald::pg
