#pragma once
// Templates stored versioned in PostgreSQL (table `templates`, schemas/migrations/0002), their
// validation against the event type, the loader of the compiled-in defaults, and the cache the
// delivery stages render from.
//
// Storage. A key is (event_type, channel, locale). Every save appends version N+1, nothing is
// updated in place, and the latest version of a key is the one in use. A delete appends a
// tombstone version (deleted = true): the key leaves use, its history stays, and a later save
// continues the numbering. Saves and deletes of one key are serialized by a transaction-scoped
// advisory lock, so concurrent saves get distinct, consecutive versions and never fail on each
// other.
//
// Validation, on every save (the defaults included): the event type must be known; the channel
// must be one the type uses (EventTypeInfo::channels); the locale is "xx" or "xx-YY"; every part
// must be valid mustache without partials or delimiter changes; an email template needs a
// subject and a text, other channels a text and no html. Every top-level variable must be
// allowed: the common fields enrichment gives every notification (CommonVariables()), the
// type's own enrichment fields (x-herald.variables in schemas/events/<type>.json) and the
// fields its schema declares under payload.data. Names inside a section
// ({{#releases}}{{title}}{{/releases}}) belong to the section's items and are not checked; a
// dotted name ({{profile.city}}) is checked by its first component.
//
// Defaults. schemas/templates/*.json are compiled in; `herald migrate` (and the dev stack)
// saves each as a new version, authored kDefaultsAuthor, only when its key has no version yet
// or when the latest version is the loader's own and differs from the file. A manager's edit
// (or delete) is never overwritten, and a rerun with unchanged files writes nothing.
//
// Errors: InvalidInput for a template that fails validation (the message names the template,
// every problem, and for an unknown variable what is allowed); TransientError when PostgreSQL
// is unreachable; ConfigError when the templates table does not exist (migrations not applied).
//
// Thread safety: the free functions use the connection they are given, and a pqxx connection
// must not be shared between threads. TemplateCache is thread-safe.

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "herald/schema/registry.hpp"
#include "herald/template/renderer.hpp"

namespace herald::templates {

/// created_by of the versions written by the defaults loader. Reserved: SaveTemplate and
/// DeleteTemplate refuse it as an author, so the loader can tell its versions from a manager's.
inline constexpr const char* kDefaultsAuthor = "herald migrate";

// ---- validation (pure) ----

/// The variables enrichment gives every notification: user_id, first_name, last_name, email,
/// locale, timezone, event_type, event_id, unsubscribe_url.
const std::vector<std::string>& CommonVariables();

/// Every top-level variable a template of `type` may use, sorted and unique.
std::vector<std::string> AllowedVariables(const schema::EventTypeInfo& type);

/// The top-level variables of `t` (all parts) that `type` does not allow, sorted. Parts that
/// are not valid mustache are skipped (CheckTemplate reports them).
std::vector<std::string> UnknownVariables(const Template& t, const schema::EventTypeInfo& type);

/// Throws InvalidInput naming the template, every unknown variable with the part it is in, and
/// the allowed variables. Checks variables only; ValidateTemplate checks everything.
void CheckVariables(const Template& t, const schema::EventTypeInfo& type);

/// Every problem of `t` (empty = valid). `field` is the template JSON field at fault
/// ("/event_type", "/channel", "/locale", "/subject", "/text", "/html").
std::vector<schema::ValidationError> CheckTemplate(const Template& t, const schema::Registry& registry);

/// Throws InvalidInput ("template <type>/<channel>/<locale> is invalid: ...") listing every
/// problem CheckTemplate finds; its Field() is the first problem's field.
void ValidateTemplate(const Template& t, const schema::Registry& registry);

// ---- storage ----

/// One stored version of a template key.
struct StoredTemplate {
  Template tmpl;           // tmpl.version is the stored version
  bool deleted = false;    // a tombstone: the key was deleted at this version
  std::string created_at;  // RFC 3339, UTC, millisecond precision
  std::string created_by;
};

/// Validates `t` (ValidateTemplate) and appends it as the key's next version; returns that
/// version. `t.version` is ignored. `author` must not be empty or kDefaultsAuthor.
int SaveTemplate(pqxx::connection& conn, const schema::Registry& registry, const Template& t,
                 const std::string& author);

/// Appends a tombstone to a key whose latest version is live; returns the tombstone's version,
/// or nullopt when the key has no live version (never saved, or already deleted).
std::optional<int> DeleteTemplate(pqxx::connection& conn, const std::string& event_type,
                                  const std::string& channel, const std::string& locale,
                                  const std::string& author);

/// The latest version of every live key, as the renderer's store.
TemplateStore LoadTemplates(pqxx::connection& conn);

/// The latest version of every key, ordered by key; tombstoned keys only when `include_deleted`.
std::vector<StoredTemplate> ListTemplates(pqxx::connection& conn, bool include_deleted = false);

/// The latest version of a key (nullopt when none or deleted), or exactly `version` when given
/// (nullopt when there is no such version; a tombstone is returned with deleted = true).
std::optional<StoredTemplate> GetTemplate(pqxx::connection& conn, const std::string& event_type,
                                          const std::string& channel, const std::string& locale,
                                          std::optional<int> version = std::nullopt);

/// Every version of a key, newest first (tombstones included).
std::vector<StoredTemplate> TemplateHistory(pqxx::connection& conn, const std::string& event_type,
                                            const std::string& channel, const std::string& locale);

/// Loads the compiled-in default templates as described above, in one transaction. Returns one
/// line per key it wrote ("added ... v1", "updated ... to v3") or left alone although the file
/// differs ("kept ... v4 by alice"); empty when everything is up to date. Throws ConfigError if a
/// compiled-in default fails validation (a build defect).
std::vector<std::string> LoadDefaultTemplates(pqxx::connection& conn, const schema::Registry& registry);

// ---- the delivery stages' view ----

/// A snapshot of the live templates, loaded from PostgreSQL and refreshed in the background of
/// the poll loop. Operator contract:
///  - Start: the constructor must load at least one template, else it throws and the stage
///    fails to start with the reason (TransientError: PostgreSQL unreachable; ConfigError: the
///    table is missing or empty, run `herald migrate`). A stage never silently renders from
///    the compiled-in files, which could differ from what managers edited.
///  - Running: RefreshIfDue() looks for changes at most every `refresh_interval` with one cheap
///    query (row count and newest created_at; the table is append-only) and reloads only on a
///    change. If PostgreSQL is unreachable, or a reload finds no live template at all, it logs a
///    warning and keeps serving the last good snapshot; it tries again an interval later and
///    reconnects as needed. So an edit reaches every replica within about one interval.
/// Thread safety: every method may be called from any thread. A snapshot from Current() stays
/// valid for as long as the caller holds it, whatever refreshes happen meanwhile.
class TemplateCache {
 public:
  struct Options {
    std::string pg_url;
    std::chrono::milliseconds refresh_interval{10'000};  // how often to look for changes
  };

  explicit TemplateCache(Options options);
  ~TemplateCache();
  TemplateCache(const TemplateCache&) = delete;
  TemplateCache& operator=(const TemplateCache&) = delete;

  /// The current snapshot (never null).
  std::shared_ptr<const TemplateStore> Current() const;

  /// Checks for changes when `refresh_interval` has passed since the last check; returns true
  /// when a new snapshot was installed. Never throws. Returns at once (false) while another
  /// thread is refreshing.
  bool RefreshIfDue() noexcept;

  /// Checks now, whatever the interval; returns true when a new snapshot was installed. Throws
  /// like the constructor (the last good snapshot stays in place).
  bool Refresh();

 private:
  struct Fingerprint {
    long long rows = -1;
    std::string newest;
    bool operator==(const Fingerprint&) const = default;
  };
  bool RefreshLocked();

  Options options_;
  mutable std::mutex store_mu_;  // guards store_
  std::shared_ptr<const TemplateStore> store_;
  std::mutex refresh_mu_;  // guards the members below
  std::unique_ptr<pqxx::connection> conn_;
  Fingerprint fingerprint_;
  std::chrono::steady_clock::time_point last_check_;
};

}  // namespace herald::templates
