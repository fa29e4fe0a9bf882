#pragma once
// PostgreSQL access (libpqxx 6.4) and versioned migrations.
// Migrations are the compiled-in schemas/migrations/NNNN_name.sql files, applied in order,
// each in its own transaction, under an advisory lock so concurrent `herald migrate` runs
// are safe. Applied versions are recorded in schema_migrations.

#include <memory>
#include <string>
#include <vector>

#include <pqxx/pqxx>

namespace herald::pg {

/// Opens a connection; throws TransientError with the server's message when it cannot.
std::unique_ptr<pqxx::connection> Connect(const std::string& url);

struct Migration {
  int version = 0;
  std::string name;
  std::string sql;
};

/// The compiled-in migrations, ordered by version. Throws ConfigError on a bad file name.
std::vector<Migration> BuiltinMigrations();

/// Applies the migrations not applied yet; returns the names applied now.
std::vector<std::string> Migrate(pqxx::connection& conn,
                                 const std::vector<Migration>& migrations = BuiltinMigrations());

}  // namespace herald::pg
