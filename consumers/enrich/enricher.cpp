#include "enrich/enricher.hpp"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <map>
#include <set>
#include <thread>

#include "enrich/enrich.hpp"
#include "herald/common/errors.hpp"
#include "herald/common/ids.hpp"
#include "herald/common/logging.hpp"
#include "herald/http/client.hpp"

namespace herald::consumers::enrich {
namespace {

using Json = nlohmann::json;

bool TypeNeedsUgc(const std::string& type) { return type == "bookmark.reminder" || type == "stats.monthly"; }

std::string Localized(const Json& movie, const std::string& locale) {
  if (locale == "ru" && movie.contains("title_ru") && movie["title_ru"].is_string()) return movie["title_ru"];
  return movie.value("title", movie.value("movie_id", ""));
}

std::string JoinGenres(const Json& movie) {
  std::string out;
  for (const auto& g : movie.value("genres", Json::array())) {
    if (!out.empty()) out += ", ";
    out += g.get<std::string>();
  }
  return out;
}

// A transient answer: worth trying again later, and a failure for the breaker.
bool Transient(const http::Result& r) {
  return !r.response || r.response->status >= 500 || r.response->status == 429;
}

}  // namespace

std::pair<TimePoint, TimePoint> StatsMonth(const model::NotificationRequest& request, std::string* label) {
  using namespace std::chrono;
  int y = 0;
  unsigned m = 0;
  auto text = request.data.is_object() ? request.data.value("month", std::string()) : std::string();
  bool given = text.size() == 7 && std::sscanf(text.c_str(), "%4d-%2u", &y, &m) == 2 && m >= 1 && m <= 12;
  if (!given) {
    year_month_day created{floor<days>(request.created)};
    auto prev = year_month{created.year(), created.month()} - months{1};
    y = static_cast<int>(prev.year());
    m = static_cast<unsigned>(prev.month());
  }
  year_month ym{year{y}, std::chrono::month{m}};
  auto from = sys_days{ym / 1};
  auto to = sys_days{(ym + months{1}) / 1};
  if (label) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04d-%02u", y, m);
    *label = buf;
  }
  return {time_point_cast<milliseconds>(from), time_point_cast<milliseconds>(to)};
}

std::vector<std::string> MovieIdsNeeded(const model::NotificationRequest& request, const Json& ugc) {
  std::vector<std::string> ids;
  if (request.event_type == "episode.released" || request.event_type == "promo.new_releases") {
    ids = request.content;
  } else if (TypeNeedsUgc(request.event_type) && ugc.is_object()) {
    for (const auto& item : ugc.value("items", Json::array())) ids.push_back(item.value("movie_id", ""));
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::erase(ids, std::string());
  return ids;
}

Json BuildVars(const model::NotificationRequest& request, const Json& user,
               const std::map<std::string, Json>& movies, const Json& ugc) {
  Json vars = request.data.is_object() ? request.data : Json::object();
  for (const char* f : {"user_id", "first_name", "last_name", "email", "locale", "timezone"}) {
    if (user.contains(f) && !user[f].is_null()) vars[f] = user[f];
  }
  std::string locale = user.value("locale", "en");
  vars["event_type"] = request.event_type;
  vars["event_id"] = request.event_id;
  auto movie = [&](const std::string& id) -> const Json* {
    auto it = movies.find(id);
    return it == movies.end() || it->second.is_null() ? nullptr : &it->second;
  };
  const auto& type = request.event_type;
  if (type == "episode.released") {
    const Json* m = request.content.empty() ? nullptr : movie(request.content.front());
    if (m) {
      vars["series_title"] = Localized(*m, locale);
      vars["season"] = m->value("season", Json());
      vars["episode"] = m->value("episode", Json());
      vars["url"] = m->value("url", "");
      vars["release_date"] = m->value("release_date", "");
    }
  } else if (type == "promo.new_releases") {
    Json releases = Json::array();
    for (const auto& id : request.content) {
      if (const Json* m = movie(id)) {
        releases.push_back({{"title", Localized(*m, locale)}, {"url", m->value("url", "")}, {"genres_text", JoinGenres(*m)}});
      }
    }
    vars["release_count"] = releases.size();
    vars["releases"] = std::move(releases);
  } else if (type == "bookmark.reminder") {
    Json bookmarks = Json::array();
    for (const auto& item : ugc.value("items", Json::array())) {
      if (const Json* m = movie(item.value("movie_id", ""))) {
        bookmarks.push_back({{"title", Localized(*m, locale)}, {"url", m->value("url", "")}});
      }
    }
    vars["bookmark_count"] = bookmarks.size();
    vars["bookmarks"] = std::move(bookmarks);
  } else if (type == "stats.monthly") {
    std::string label;
    StatsMonth(request, &label);
    std::int64_t seconds = 0;
    std::set<std::string> titles;
    std::map<std::string, std::int64_t> genre_seconds;
    for (const auto& item : ugc.value("items", Json::array())) {
      auto s = item.value("seconds", std::int64_t{0});
      auto id = item.value("movie_id", "");
      seconds += s;
      titles.insert(id);
      if (const Json* m = movie(id)) {
        for (const auto& g : m->value("genres", Json::array())) genre_seconds[g.get<std::string>()] += s;
      }
    }
    std::vector<std::pair<std::string, std::int64_t>> ranked(genre_seconds.begin(), genre_seconds.end());
    std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    Json top = Json::array();
    for (std::size_t i = 0; i < ranked.size() && i < 3; ++i) {
      top.push_back({{"genre", ranked[i].first}, {"minutes", ranked[i].second / 60}});
    }
    vars["month"] = label;
    vars["minutes_watched"] = seconds / 60;
    vars["titles_watched"] = titles.size();
    vars["top_genre"] = ranked.empty() ? "" : ranked.front().first;
    vars["top_genres"] = std::move(top);
  }
  return vars;
}

struct Enricher::Impl {
  EnricherOptions options;
  const schema::Registry& registry;
  http::MultiClient client;
  std::map<std::string, std::unique_ptr<http::CircuitBreaker>> breakers;
  std::unique_ptr<cache::TwoLevelCache> users_cache;
  std::unique_ptr<cache::TwoLevelCache> movies_cache;
  metrics::Registry& metrics;
  metrics::Counter& http_calls;

  Impl(EnricherOptions o, const schema::Registry& r, redis::Client* redis, metrics::Registry& m)
      : options(std::move(o)),
        registry(r),
        client(http::MultiClient::Options{options.concurrency, options.concurrency, options.connect_timeout,
                                          options.timeout, "herald-enrich", ""}),
        metrics(m),
        http_calls(m.GetCounter("herald_upstream_requests_total", "Requests sent to upstream APIs", {{"stage", "enrich"}})) {
    for (const char* name : {"auth", "ugc", "movies"}) {
      auto& gauge = m.GetGauge("herald_breaker_state", "Circuit breaker state (0 closed, 1 open, 2 half-open)",
                               {{"upstream", name}});
      http::CircuitBreaker::Options bo;
      bo.open_for = options.breaker_open_for;
      breakers[name] = std::make_unique<http::CircuitBreaker>(
          name, bo, nullptr, [&gauge, &m, name = std::string(name)](http::CircuitBreaker::State s) {
            gauge.Set(static_cast<double>(s));
            m.GetCounter("herald_breaker_transitions_total", "Circuit breaker state changes",
                         {{"upstream", name}, {"to", std::string(http::BreakerStateName(s))}})
                .Inc();
            Logger("enrich")->warn("circuit breaker for {} is now {}", name, http::BreakerStateName(s));
          });
    }
    if (options.caching) {
      users_cache = std::make_unique<cache::TwoLevelCache>(
          cache::TwoLevelCache::Options{"user", options.user_cache_entries, std::chrono::seconds(60), options.cache_ttl}, redis, m);
      movies_cache = std::make_unique<cache::TwoLevelCache>(
          cache::TwoLevelCache::Options{"movie", 20'000, std::chrono::seconds(300), options.cache_ttl}, redis, m);
    }
  }

  // Sends requests to one upstream through its breaker. A refused call gets an empty
  // Result whose error says so.
  std::vector<http::Result> Call(const std::string& upstream, const std::vector<http::Request>& reqs,
                                 std::vector<bool>* refused) {
    auto& breaker = *breakers.at(upstream);
    std::vector<http::Request> allowed;
    std::vector<std::size_t> index;
    refused->assign(reqs.size(), false);
    for (std::size_t i = 0; i < reqs.size(); ++i) {
      if (breaker.Allow()) {
        allowed.push_back(reqs[i]);
        index.push_back(i);
      } else {
        (*refused)[i] = true;
      }
    }
    std::vector<http::Result> out(reqs.size());
    // Up to two quick retries of transient failures (not 429, which asks to slow down), while
    // the breaker allows: a flaky upstream costs milliseconds here instead of a trip through
    // the retry tiers. What still fails goes to the tiers.
    for (int round = 0; round < 3 && !allowed.empty(); ++round) {
      if (round > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20 * round * round));
      http_calls.Inc(allowed.size());
      auto results = client.Execute(allowed);
      std::vector<http::Request> again;
      std::vector<std::size_t> again_index;
      for (std::size_t k = 0; k < results.size(); ++k) {
        bool transient = Transient(results[k]);
        if (transient) breaker.RecordFailure();
        else breaker.RecordSuccess();
        bool throttled = results[k].response && results[k].response->status == 429;
        if (transient && !throttled && round < 2 && breaker.Allow()) {
          again.push_back(std::move(allowed[k]));
          again_index.push_back(index[k]);
        }
        out[index[k]] = std::move(results[k]);
      }
      allowed = std::move(again);
      index = std::move(again_index);
    }
    return out;
  }

  // Looks documents up by id: cache, then the upstream (batched or one by one). Ids that
  // the upstream does not know are absent from the result; ids whose lookup failed are in
  // `failed` (with `parked` when the breaker refused). Fetched documents in `local_only`
  // are cached in this process only (see TwoLevelCache::PutMany).
  std::map<std::string, Json> Lookup(const std::string& upstream, const std::string& base_url,
                                     const std::string& collection, const std::string& list_field,
                                     const std::string& id_field, const std::set<std::string>& ids,
                                     cache::TwoLevelCache* cache, std::map<std::string, std::string>& failed,
                                     std::set<std::string>& parked, const std::set<std::string>* local_only = nullptr) {
    std::map<std::string, Json> found;
    std::vector<std::string> wanted(ids.begin(), ids.end());
    if (cache) {
      found = cache->GetMany(wanted);
      std::erase_if(wanted, [&](const std::string& id) { return found.count(id) > 0; });
    }
    if (wanted.empty()) return found;
    std::vector<http::Request> reqs;
    std::vector<std::vector<std::string>> chunks;
    if (options.batching) {
      for (std::size_t i = 0; i < wanted.size(); i += 500) {
        chunks.emplace_back(wanted.begin() + static_cast<long>(i),
                            wanted.begin() + static_cast<long>(std::min(wanted.size(), i + 500)));
        reqs.push_back({"POST", base_url + "/api/v1/" + collection + ":batchGet", Json{{"ids", chunks.back()}}.dump(),
                        "application/json", {}});
      }
    } else {
      for (const auto& id : wanted) {
        chunks.push_back({id});
        reqs.push_back({"GET", base_url + "/api/v1/" + collection + "/" + http::UrlEncode(id), "", "application/json", {}});
      }
    }
    std::vector<bool> refused;
    auto results = Call(upstream, reqs, &refused);
    std::map<std::string, Json> fetched;
    for (std::size_t i = 0; i < results.size(); ++i) {
      auto fail = [&](const std::string& why) {
        for (const auto& id : chunks[i]) {
          failed[id] = why;
          if (refused[i]) parked.insert(id);
        }
      };
      if (refused[i]) {
        fail(upstream + " circuit breaker is open");
        continue;
      }
      const auto& r = results[i];
      if (!r.response) {
        fail(r.error);
        continue;
      }
      if (!options.batching && r.response->status == 404) continue;  // unknown id
      if (r.response->status != 200) {
        fail(upstream + " answered " + std::to_string(r.response->status));
        continue;
      }
      auto doc = Json::parse(r.response->body, nullptr, false);
      if (doc.is_discarded() || !doc.is_object()) {
        fail(upstream + " answered a malformed body");
        continue;
      }
      if (options.batching) {
        for (auto& d : doc.value(list_field, Json::array())) {
          if (d.is_object() && d.contains(id_field)) fetched[d[id_field].get<std::string>()] = d;
        }
      } else if (doc.contains(id_field)) {
        fetched[doc[id_field].get<std::string>()] = doc;
      }
    }
    if (cache) cache->PutMany(fetched, local_only);
    found.merge(fetched);
    return found;
  }
};

Enricher::Enricher(EnricherOptions options, const schema::Registry& registry, redis::Client* redis,
                   metrics::Registry& metrics)
    : impl_(std::make_unique<Impl>(std::move(options), registry, redis, metrics)) {}

Enricher::~Enricher() = default;

http::CircuitBreaker& Enricher::Breaker(const std::string& upstream) { return *impl_->breakers.at(upstream); }

std::vector<Outcome> Enricher::Process(const std::vector<model::NotificationRequest>& requests) {
  auto& im = *impl_;
  std::vector<Outcome> out(requests.size());
  std::vector<bool> pending(requests.size(), true);
  auto settle = [&](std::size_t i, Outcome::Kind kind, std::string reason) {
    out[i].kind = kind;
    out[i].reason = std::move(reason);
    pending[i] = false;
  };

  // 1. Users, once per distinct id. A user wanted only by bulk requests (a campaign's, or
  // low priority: a segment's fan-out) is read once and not again soon, so it is cached in
  // this process only: the shared Redis level would otherwise hold every recipient of a
  // campaign for HERALD_CACHE_TTL (676 MiB after 1,000,000 users).
  std::set<std::string> user_ids, shared_users;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (!im.registry.Find(requests[i].event_type)) {
      settle(i, Outcome::Kind::kInvalid, "unknown event type '" + requests[i].event_type + "'");
      continue;
    }
    user_ids.insert(requests[i].user_id);
    if (!requests[i].campaign_id && requests[i].priority != model::Priority::kLow) shared_users.insert(requests[i].user_id);
  }
  std::set<std::string> bulk_users;
  std::set_difference(user_ids.begin(), user_ids.end(), shared_users.begin(), shared_users.end(),
                      std::inserter(bulk_users, bulk_users.end()));
  std::map<std::string, std::string> failed;
  std::set<std::string> parked;
  auto users = im.Lookup("auth", im.options.auth_url, "users", "users", "user_id", user_ids, im.users_cache.get(),
                         failed, parked, &bulk_users);
  // Herald's own preferences override what auth says (channel order, quiet hours, locale)
  // and add the opt-outs.
  if (im.options.preferences && !users.empty()) {
    std::set<std::string> found;
    for (const auto& [id, u] : users) found.insert(id);
    for (auto& [id, overlay] : im.options.preferences(found)) {
      auto u = users.find(id);
      if (u == users.end()) continue;
      for (auto& [k, v] : overlay.items()) {
        if (k == "quiet_hours" && v.is_object() && v.contains("off")) u->second[k] = nullptr;
        else u->second[k] = v;
      }
    }
  }

  // 2. Channel decision; per-user ugc data for the types that need it.
  std::vector<Decision> decisions(requests.size());
  std::vector<http::Request> ugc_reqs;
  std::vector<std::size_t> ugc_owner;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (!pending[i]) continue;
    const auto& req = requests[i];
    const auto* type = im.registry.Find(req.event_type);
    if (auto f = failed.find(req.user_id); f != failed.end()) {
      settle(i, parked.count(req.user_id) ? Outcome::Kind::kPark : Outcome::Kind::kRetry, "user lookup: " + f->second);
      continue;
    }
    auto u = users.find(req.user_id);
    if (u == users.end()) {
      out[i].status = StatusWithoutDelivery(req, type->channels.front(), model::Status::kSuppressed, "unknown user");
      settle(i, Outcome::Kind::kStatus, "unknown user");
      continue;
    }
    decisions[i] = Decide(req, u->second, *type);
    if (!decisions[i].delivery) {
      out[i].status = StatusWithoutDelivery(req, decisions[i].channel, decisions[i].status, decisions[i].reason);
      settle(i, Outcome::Kind::kStatus, decisions[i].reason);
      continue;
    }
    if (req.event_type == "bookmark.reminder") {
      ugc_reqs.push_back({"GET", im.options.ugc_url + "/api/v1/users/" + http::UrlEncode(req.user_id) + "/bookmarks", "",
                          "application/json", {}});
      ugc_owner.push_back(i);
    } else if (req.event_type == "stats.monthly") {
      auto [from, to] = StatsMonth(req, nullptr);
      ugc_reqs.push_back({"GET",
                          im.options.ugc_url + "/api/v1/users/" + http::UrlEncode(req.user_id) +
                              "/watch-history?from=" + http::UrlEncode(FormatRfc3339(from)) +
                              "&to=" + http::UrlEncode(FormatRfc3339(to)),
                          "", "application/json", {}});
      ugc_owner.push_back(i);
    }
  }
  std::vector<Json> ugc(requests.size());
  if (!ugc_reqs.empty()) {
    std::vector<bool> refused;
    auto results = im.Call("ugc", ugc_reqs, &refused);
    for (std::size_t k = 0; k < results.size(); ++k) {
      std::size_t i = ugc_owner[k];
      if (refused[k]) {
        settle(i, Outcome::Kind::kPark, "ugc circuit breaker is open");
        continue;
      }
      const auto& r = results[k];
      if (!r.response || Transient(r)) {
        settle(i, Outcome::Kind::kRetry, "ugc: " + (r.response ? "answered " + std::to_string(r.response->status) : r.error));
        continue;
      }
      if (r.response->status == 404) {
        ugc[i] = Json{{"items", Json::array()}};  // ugc has nothing for this user
        continue;
      }
      auto doc = Json::parse(r.response->body, nullptr, false);
      if (r.response->status != 200 || doc.is_discarded() || !doc.is_object()) {
        settle(i, Outcome::Kind::kRetry, "ugc answered " + std::to_string(r.response->status) + " with an unusable body");
        continue;
      }
      ugc[i] = std::move(doc);
    }
  }

  // 3. Movies, once per distinct id.
  std::set<std::string> movie_ids;
  std::vector<std::vector<std::string>> needed(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (!pending[i]) continue;
    needed[i] = MovieIdsNeeded(requests[i], ugc[i]);
    movie_ids.insert(needed[i].begin(), needed[i].end());
  }
  failed.clear();
  parked.clear();
  auto movies = im.Lookup("movies", im.options.movies_url, "movies", "movies", "movie_id", movie_ids,
                          im.movies_cache.get(), failed, parked);

  // 4. Variables.
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (!pending[i]) continue;
    bool failed_movie = false, parked_movie = false;
    std::string why;
    for (const auto& id : needed[i]) {
      if (auto f = failed.find(id); f != failed.end()) {
        failed_movie = true;
        parked_movie = parked_movie || parked.count(id) > 0;
        why = f->second;
      }
    }
    if (failed_movie) {
      settle(i, parked_movie ? Outcome::Kind::kPark : Outcome::Kind::kRetry, "movie lookup: " + why);
      continue;
    }
    auto& d = *decisions[i].delivery;
    d.vars = BuildVars(requests[i], users.at(requests[i].user_id), movies, ugc[i]);
    out[i].delivery = std::move(d);
    settle(i, Outcome::Kind::kDeliver, "");
  }
  return out;
}

}  // namespace herald::consumers::enrich
