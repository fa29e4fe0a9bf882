// Deterministic synthetic users, movies, followers, watch history and bookmarks.
//
// Every value is derived from (seed, key, stream) through splitmix64, so nothing is
// stored and the output never depends on the platform, the standard library or the
// order of calls. Changing any draw here changes the data set: tests compare against
// these functions, not against literals, except for the documented invariants.

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "herald/dev/fake_servers.hpp"

namespace herald::dev {
namespace {

constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

constexpr std::uint64_t Finalize(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr std::uint64_t SplitMix64(std::uint64_t x) { return Finalize(x + kGolden); }

constexpr std::uint64_t Fnv1a(std::string_view text) {
  std::uint64_t hash = 14695981039346656037ULL;
  for (const char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return hash;
}

// Independent streams so that, e.g., the segment filter can draw only the attributes
// it needs without materializing the whole user.
enum class Stream : std::uint64_t {
  kUserCore = 1,
  kUserProfile = 2,
  kFollowers = 3,
  kHistory = 4,
  kBookmarks = 5,
  kMovie = 6,
};

class DetRandom {
 public:
  DetRandom(std::uint64_t seed, std::uint64_t key, Stream stream)
      : state_(SplitMix64(SplitMix64(seed ^ (static_cast<std::uint64_t>(stream) * kGolden)) ^ key)) {}

  std::uint64_t Next() {
    state_ += kGolden;
    return Finalize(state_);
  }
  // Modulo bias is irrelevant for fake data with n far below 2^64.
  std::uint64_t Below(std::uint64_t n) { return Next() % n; }
  bool Percent(std::uint64_t percent) { return Below(100) < percent; }

 private:
  std::uint64_t state_;
};

struct TimezoneInfo {
  std::string_view name;
  unsigned weight;  // out of 100
  std::string_view phone_prefix;
  int phone_digits;  // digits after the prefix
  bool russian;      // mostly ru-locale users
};

// Moscow dominates (a Russian cinema); every other zone keeps >= 3% so that each one
// shows up among the first few hundred users. Lord Howe (+10:30/+11, a 30-minute DST
// shift) and Eucla (+08:45) are the awkward cases for local-time delivery.
constexpr std::array<TimezoneInfo, 13> kTimezoneInfo{{
    {"Europe/Moscow", 28, "+79", 9, true},
    {"Europe/Kaliningrad", 6, "+79", 9, true},
    {"Asia/Vladivostok", 6, "+79", 9, true},
    {"UTC", 6, "+447", 9, false},
    {"Europe/London", 8, "+447", 9, false},
    {"Europe/Berlin", 8, "+4915", 9, false},
    {"America/New_York", 8, "+1212", 7, false},
    {"Asia/Tokyo", 6, "+8190", 8, false},
    {"Asia/Kolkata", 6, "+919", 9, false},
    {"Australia/Adelaide", 6, "+614", 8, false},
    {"Asia/Kathmandu", 6, "+97798", 8, false},
    {"Australia/Eucla", 3, "+614", 8, false},
    {"Australia/Lord_Howe", 3, "+614", 8, false},
}};

constexpr auto kTimezoneNames = [] {
  std::array<std::string_view, kTimezoneInfo.size()> names{};
  for (std::size_t i = 0; i < kTimezoneInfo.size(); ++i) names[i] = kTimezoneInfo[i].name;
  return names;
}();

static_assert([] {
  unsigned total = 0;
  for (const auto& tz : kTimezoneInfo) total += tz.weight;
  return total == 100;
}());

struct TagInfo {
  std::string_view name;
  unsigned percent;
};

constexpr std::array<TagInfo, 6> kTagInfo{{
    {"premium", 20},
    {"family", 15},
    {"kids", 10},
    {"sports", 12},
    {"new", 8},
    {"churn-risk", 10},
}};

constexpr auto kTagNames = [] {
  std::array<std::string_view, kTagInfo.size()> names{};
  for (std::size_t i = 0; i < kTagInfo.size(); ++i) names[i] = kTagInfo[i].name;
  return names;
}();

constexpr std::array<std::string_view, 10> kRuMaleFirst{
    "Александр", "Дмитрий", "Максим", "Сергей", "Андрей",
    "Алексей",   "Иван",    "Михаил", "Никита", "Егор"};
constexpr std::array<std::string_view, 10> kRuFemaleFirst{
    "Анна",      "Мария",   "Елена", "Ольга", "Наталья",
    "Екатерина", "Татьяна", "Дарья", "Алина", "София"};
// Male forms; every one ends in -ов/-ев, so the female form appends "а".
constexpr std::array<std::string_view, 15> kRuLast{
    "Иванов",  "Смирнов",  "Кузнецов", "Попов",  "Васильев",
    "Петров",  "Соколов",  "Михайлов", "Новиков", "Фёдоров",
    "Морозов", "Волков",   "Алексеев", "Лебедев", "Семёнов"};
constexpr std::array<std::string_view, 8> kEnMaleFirst{
    "James", "Liam", "Noah", "William", "Oliver", "Lucas", "Henry", "Jack"};
constexpr std::array<std::string_view, 8> kEnFemaleFirst{
    "Olivia", "Emma", "Ava", "Sophia", "Isabella", "Mia", "Charlotte", "Amelia"};
constexpr std::array<std::string_view, 16> kEnLast{
    "Smith", "Johnson", "Williams", "Brown",  "Jones",  "Miller", "Davis", "Wilson",
    "Taylor", "Clark",  "Walker",   "Wright", "Hall",   "Young",  "King",  "Scott"};

constexpr std::array<std::string_view, 5> kQuietFrom{"21:00", "22:00", "22:30", "23:00", "00:00"};
constexpr std::array<std::string_view, 5> kQuietTo{"06:00", "07:00", "07:30", "08:00", "09:00"};

struct TitlePair {
  std::string_view en;
  std::string_view ru;
};

constexpr std::array<TitlePair, 24> kTitles{{
    {"The Last Train", "Последний поезд"},
    {"Northern Lights", "Северное сияние"},
    {"Silent River", "Тихая река"},
    {"The Long Winter", "Долгая зима"},
    {"City of Glass", "Стеклянный город"},
    {"Red Horizon", "Красный горизонт"},
    {"The Lighthouse Keeper", "Смотритель маяка"},
    {"Midnight Express", "Полуночный экспресс"},
    {"Steel Wings", "Стальные крылья"},
    {"The Quiet Forest", "Тихий лес"},
    {"Distant Shores", "Далёкие берега"},
    {"The Chess Player", "Шахматист"},
    {"Summer in Yalta", "Лето в Ялте"},
    {"Lost Signal", "Потерянный сигнал"},
    {"The Iron Bridge", "Железный мост"},
    {"White Nights", "Белые ночи"},
    {"Ghost Station", "Станция-призрак"},
    {"The Inventor", "Изобретатель"},
    {"Winter Garden", "Зимний сад"},
    {"Falling Stars", "Падающие звёзды"},
    {"The Old Map", "Старая карта"},
    {"Deep Water", "Глубокая вода"},
    {"Empty Streets", "Пустые улицы"},
    {"The Ninth Wave", "Девятый вал"},
}};

constexpr std::array<std::string_view, 10> kGenres{
    "drama",  "comedy", "thriller", "documentary", "animation",
    "sci-fi", "horror", "romance",  "action",      "family"};

constexpr std::int64_t kMsPerDay = 86'400'000;
constexpr std::uint64_t kEpisodesPerSeries = 96;  // 8 seasons x 12 episodes
constexpr std::uint64_t kEpisodesPerSeason = 12;
constexpr std::uint64_t kFilmCount = 5'000;
constexpr std::uint64_t kEpisodeCount = 20'000;

template <typename Array>
auto Pick(DetRandom& random, const Array& values) {
  return values[random.Below(values.size())];
}

std::string FormatUtcSeconds(std::int64_t epoch_ms) {
  using namespace std::chrono;
  const sys_time<milliseconds> tp{milliseconds{epoch_ms}};
  const auto day = floor<days>(tp);
  const year_month_day ymd{day};
  const hh_mm_ss hms{floor<seconds>(tp - day)};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                     hms.hours().count(), hms.minutes().count(), hms.seconds().count());
}

std::int64_t EpochMs(int year, unsigned month, unsigned day) {
  using namespace std::chrono;
  const sys_days days_point{std::chrono::year{year} / std::chrono::month{month} / std::chrono::day{day}};
  return duration_cast<milliseconds>(days_point.time_since_epoch()).count();
}

// --- users ---------------------------------------------------------------------

struct UserCore {
  std::size_t timezone;
  bool russian;
  std::uint32_t tag_mask;
};

UserCore DrawCore(std::uint64_t seed, std::uint64_t index) {
  DetRandom random(seed, index, Stream::kUserCore);
  UserCore core{};
  auto roll = random.Below(100);
  for (std::size_t i = 0; i < kTimezoneInfo.size(); ++i) {
    if (roll < kTimezoneInfo[i].weight) {
      core.timezone = i;
      break;
    }
    roll -= kTimezoneInfo[i].weight;
  }
  const auto& tz = kTimezoneInfo[core.timezone];
  const unsigned ru_percent = tz.russian ? 92 : (tz.name == "UTC" ? 40 : 10);
  core.russian = random.Percent(ru_percent);
  for (std::size_t i = 0; i < kTagInfo.size(); ++i) {
    if (random.Percent(kTagInfo[i].percent)) core.tag_mask |= 1U << i;
  }
  return core;
}

// A filter resolved against the fixed attribute tables, so matching is integer
// comparisons only.
struct ResolvedFilter {
  bool impossible = false;
  std::optional<std::size_t> timezone;
  std::optional<bool> russian;
  std::uint32_t tag_mask = 0;
};

ResolvedFilter Resolve(const UserFilter& filter) {
  ResolvedFilter resolved;
  if (!filter.timezone.empty()) {
    const auto it = std::find(kTimezoneNames.begin(), kTimezoneNames.end(), filter.timezone);
    if (it == kTimezoneNames.end()) {
      resolved.impossible = true;
    } else {
      resolved.timezone = static_cast<std::size_t>(it - kTimezoneNames.begin());
    }
  }
  if (!filter.locale.empty()) {
    if (filter.locale == "ru") {
      resolved.russian = true;
    } else if (filter.locale == "en") {
      resolved.russian = false;
    } else {
      resolved.impossible = true;
    }
  }
  if (!filter.tag.empty()) {
    const auto it = std::find(kTagNames.begin(), kTagNames.end(), filter.tag);
    if (it == kTagNames.end()) {
      resolved.impossible = true;
    } else {
      resolved.tag_mask = 1U << static_cast<unsigned>(it - kTagNames.begin());
    }
  }
  return resolved;
}

bool Matches(const UserCore& core, const ResolvedFilter& filter) {
  if (filter.impossible) return false;
  if (filter.timezone && *filter.timezone != core.timezone) return false;
  if (filter.russian && *filter.russian != core.russian) return false;
  return (core.tag_mask & filter.tag_mask) == filter.tag_mask;
}

std::string HexToken(std::uint64_t value) { return fmt::format("{:016x}", value); }

nlohmann::json Channels(DetRandom& random, bool has_phone, bool has_telegram, bool has_push) {
  std::vector<std::string_view> others;
  if (has_phone) others.push_back("sms");
  if (has_telegram) others.push_back("telegram");
  if (has_push) others.push_back("push");

  std::vector<std::string_view> order;
  std::vector<std::string_view> rest;
  if (random.Percent(70) || others.empty()) {
    order.push_back("email");
    rest = others;
  } else {
    const auto first = random.Below(others.size());
    order.push_back(others[first]);
    rest.push_back("email");
    for (std::size_t i = 0; i < others.size(); ++i) {
      if (i != first) rest.push_back(others[i]);
    }
  }
  // Fisher-Yates with our own generator (std::shuffle's algorithm is unspecified).
  for (std::size_t i = rest.size(); i > 1; --i) {
    std::swap(rest[i - 1], rest[random.Below(i)]);
  }
  for (const auto channel : rest) {
    if (random.Percent(50)) order.push_back(channel);
  }
  auto channels = nlohmann::json::array();
  for (const auto channel : order) channels.push_back(channel);
  return channels;
}

// --- content -------------------------------------------------------------------

std::optional<std::uint64_t> ParsePositive(std::string_view digits) {
  if (digits.empty() || digits.size() > 19 || digits.front() == '0') return std::nullopt;
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (error != std::errc{} || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

bool IsSlug(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

// "series-big-<N>" -> N.
std::optional<std::uint64_t> BigSeriesSize(std::string_view content_id) {
  constexpr std::string_view kPrefix = "series-big-";
  if (!content_id.starts_with(kPrefix)) return std::nullopt;
  content_id.remove_prefix(kPrefix.size());
  if (content_id == "0") return 0;
  return ParsePositive(content_id);
}

std::string_view Roman(std::uint64_t n) {
  constexpr std::array<std::string_view, 6> kRoman{"", "", "II", "III", "IV", "V"};
  return n < kRoman.size() ? kRoman[n] : "";
}

// Title pair for a key; about a third of titles are sequels ("... II").
std::pair<std::string, std::string> Title(DetRandom& random) {
  const auto& pair = Pick(random, kTitles);
  const auto sequel = random.Below(6);
  if (sequel < 2) return {std::string(pair.en), std::string(pair.ru)};
  return {fmt::format("{} {}", pair.en, Roman(sequel)), fmt::format("{} {}", pair.ru, Roman(sequel))};
}

nlohmann::json Genres(DetRandom& random) {
  std::vector<std::string_view> genres;
  const auto count = 1 + random.Below(3);
  while (genres.size() < count) {
    const auto genre = Pick(random, kGenres);
    if (std::find(genres.begin(), genres.end(), genre) == genres.end()) genres.push_back(genre);
  }
  return genres;
}

std::string ReleaseDate(DetRandom& random, int first_year, int last_year) {
  const auto year = first_year + static_cast<int>(random.Below(static_cast<std::uint64_t>(last_year - first_year + 1)));
  const auto month = 1 + static_cast<unsigned>(random.Below(12));
  const auto day = 1 + static_cast<unsigned>(random.Below(28));
  return fmt::format("{:04}-{:02}-{:02}", year, month, day);
}

nlohmann::json MovieBase(std::string_view movie_id, std::string_view kind, const std::pair<std::string, std::string>& title) {
  return {
      {"movie_id", movie_id},
      {"kind", kind},
      {"title", title.first},
      {"title_ru", title.second},
      {"season", nullptr},
      {"episode", nullptr},
      {"url", fmt::format("https://cinema.example.test/watch/{}", movie_id)},
  };
}

std::string RandomContentId(DetRandom& random) {
  if (random.Percent(60)) return fmt::format("movie-{}", 1 + random.Below(kFilmCount));
  return fmt::format("ep-{}", 1 + random.Below(kEpisodeCount));
}

}  // namespace

std::span<const std::string_view> SyntheticTimezones() { return kTimezoneNames; }

std::span<const std::string_view> SyntheticTags() { return kTagNames; }

std::string UserIdFromIndex(std::uint64_t index) { return fmt::format("u-{}", index); }

std::optional<std::uint64_t> ParseUserIndex(std::string_view user_id, std::uint64_t user_count) {
  if (!user_id.starts_with("u-")) return std::nullopt;
  const auto index = ParsePositive(user_id.substr(2));
  if (!index || *index > user_count) return std::nullopt;
  return index;
}

bool SyntheticUserMatches(std::uint64_t seed, std::uint64_t index, const UserFilter& filter) {
  return Matches(DrawCore(seed, index), Resolve(filter));
}

nlohmann::json SyntheticUser(std::uint64_t seed, std::uint64_t index) {
  const auto core = DrawCore(seed, index);
  const auto& tz = kTimezoneInfo[core.timezone];
  DetRandom random(seed, index, Stream::kUserProfile);

  const bool female = random.Percent(50);
  std::string first_name;
  std::string last_name;
  if (core.russian) {
    first_name = female ? Pick(random, kRuFemaleFirst) : Pick(random, kRuMaleFirst);
    last_name = Pick(random, kRuLast);
    if (female) last_name += "а";
  } else {
    first_name = female ? Pick(random, kEnFemaleFirst) : Pick(random, kEnMaleFirst);
    last_name = Pick(random, kEnLast);
  }

  nlohmann::json phone = nullptr;
  if (random.Percent(90)) {
    std::string number(tz.phone_prefix);
    for (int i = 0; i < tz.phone_digits; ++i) number.push_back(static_cast<char>('0' + random.Below(10)));
    phone = number;
  }

  nlohmann::json telegram_chat_id = nullptr;
  if (random.Percent(70)) {
    telegram_chat_id = static_cast<std::int64_t>(100'000'000 + random.Below(7'000'000'000ULL));
  }

  auto push_tokens = nlohmann::json::array();
  if (random.Percent(65)) {
    const auto count = 1 + random.Below(3);
    for (std::uint64_t i = 0; i < count; ++i) {
      const bool dead = random.Percent(8);  // the push fake answers UNREGISTERED for these
      push_tokens.push_back(fmt::format("{}-{}", dead ? "dead" : "fcm", HexToken(random.Next())));
    }
  }

  const int birth_year = 1950 + static_cast<int>(random.Below(63));
  const unsigned birth_month = 1 + static_cast<unsigned>(random.Below(12));
  const std::chrono::year_month_day_last last_day{
      std::chrono::year{birth_year} / std::chrono::month{birth_month} / std::chrono::last};
  const unsigned birth_day = 1 + static_cast<unsigned>(random.Below(static_cast<unsigned>(last_day.day())));

  auto tags = nlohmann::json::array();
  for (std::size_t i = 0; i < kTagInfo.size(); ++i) {
    if (core.tag_mask & (1U << i)) tags.push_back(kTagInfo[i].name);
  }

  auto channels = Channels(random, !phone.is_null(), !telegram_chat_id.is_null(), !push_tokens.empty());

  nlohmann::json quiet_hours = nullptr;
  if (random.Percent(40)) {
    quiet_hours = {{"from", Pick(random, kQuietFrom)}, {"to", Pick(random, kQuietTo)}};
  }
  const bool marketing_opt_in = random.Percent(65);

  return {
      {"user_id", UserIdFromIndex(index)},
      {"first_name", first_name},
      {"last_name", last_name},
      {"email", fmt::format("u-{}@example.test", index)},
      {"phone", phone},
      {"telegram_chat_id", telegram_chat_id},
      {"push_tokens", push_tokens},
      {"timezone", tz.name},
      {"locale", core.russian ? "ru" : "en"},
      {"birthday_date", fmt::format("{:04}-{:02}-{:02}", birth_year, birth_month, birth_day)},
      {"tags", tags},
      {"channels", channels},
      {"quiet_hours", quiet_hours},
      {"marketing_opt_in", marketing_opt_in},
  };
}

IndexPage SyntheticUserPage(std::uint64_t seed, const UserFilter& filter, std::uint64_t first_index,
                            std::size_t limit, std::uint64_t user_count, std::uint64_t scan_budget) {
  IndexPage page;
  const auto resolved = Resolve(filter);
  // Unknown tag/timezone/locale can never match: answer at once instead of scanning
  // millions of users for nothing.
  if (resolved.impossible || limit == 0 || first_index > user_count) return page;
  first_index = std::max<std::uint64_t>(first_index, 1);
  const auto scan_end = first_index + std::min(scan_budget, user_count - first_index + 1);
  auto index = first_index;
  for (; index < scan_end && page.indices.size() < limit; ++index) {
    if (Matches(DrawCore(seed, index), resolved)) page.indices.push_back(index);
  }
  if (index <= user_count) page.next_index = index;
  return page;
}

IndexPage SyntheticFollowerPage(std::uint64_t seed, std::string_view content_id, std::uint64_t first_index,
                                std::size_t limit, std::uint64_t user_count, std::uint64_t scan_budget) {
  IndexPage page;
  const auto big = BigSeriesSize(content_id);
  const auto last = big ? std::min(*big, user_count) : user_count;
  if (limit == 0 || first_index > last) return page;
  first_index = std::max<std::uint64_t>(first_index, 1);

  const auto content_key = Fnv1a(content_id);
  const auto per_mille = 5 + SplitMix64(seed ^ content_key) % 46;  // 0.5% .. 5%
  const auto scan_end = first_index + std::min(scan_budget, last - first_index + 1);
  auto index = first_index;
  for (; index < scan_end && page.indices.size() < limit; ++index) {
    if (big.has_value() || SplitMix64(SplitMix64(seed ^ content_key ^ static_cast<std::uint64_t>(Stream::kFollowers)) ^ index) % 1000 < per_mille) {
      page.indices.push_back(index);
    }
  }
  if (index <= last) page.next_index = index;
  return page;
}

nlohmann::json SyntheticWatchHistory(std::uint64_t seed, std::uint64_t index, std::int64_t from_ms, std::int64_t to_ms) {
  auto items = nlohmann::json::array();
  if (from_ms >= to_ms) return items;
  DetRandom user_random(seed, index, Stream::kHistory);
  // 15% of users never watch anything; the others watch up to 1..4 items a day.
  if (user_random.Percent(15)) return items;
  const auto max_per_day = 1 + user_random.Below(4);

  const auto floor_div = [](std::int64_t a, std::int64_t b) { return a / b - (a % b < 0 ? 1 : 0); };
  const auto first_day = floor_div(from_ms, kMsPerDay);
  const auto last_day = floor_div(to_ms - 1, kMsPerDay);
  for (auto day = first_day; day <= last_day; ++day) {
    DetRandom random(seed, SplitMix64(index) ^ static_cast<std::uint64_t>(day), Stream::kHistory);
    const auto count = random.Below(max_per_day + 1);
    std::vector<std::pair<std::int64_t, nlohmann::json>> day_items;
    for (std::uint64_t i = 0; i < count; ++i) {
      // Whole seconds, so the RFC 3339 text round-trips exactly.
      const auto at = day * kMsPerDay + static_cast<std::int64_t>(random.Below(86'400)) * 1000;
      auto movie_id = RandomContentId(random);
      const auto seconds = static_cast<std::int64_t>(120 + random.Below(10'680));
      if (at < from_ms || at >= to_ms) continue;
      day_items.emplace_back(at, nlohmann::json{{"movie_id", std::move(movie_id)},
                                                {"watched_at", FormatUtcSeconds(at)},
                                                {"seconds", seconds}});
    }
    std::stable_sort(day_items.begin(), day_items.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& item : day_items) items.push_back(std::move(item.second));
  }
  return items;
}

nlohmann::json SyntheticBookmarks(std::uint64_t seed, std::uint64_t index) {
  auto items = nlohmann::json::array();
  DetRandom random(seed, index, Stream::kBookmarks);
  if (random.Percent(30)) return items;
  const auto count = 1 + random.Below(8);
  const auto window_start = EpochMs(2024, 1, 1);
  const auto window_seconds = static_cast<std::uint64_t>((EpochMs(2025, 7, 1) - window_start) / 1000);
  std::vector<std::pair<std::int64_t, std::string>> bookmarks;
  for (std::uint64_t i = 0; i < count; ++i) {
    const auto at = window_start + static_cast<std::int64_t>(random.Below(window_seconds)) * 1000;
    auto movie_id = random.Percent(70) ? fmt::format("movie-{}", 1 + random.Below(kFilmCount))
                                       : fmt::format("series-{}", 1 + random.Below(kEpisodeCount / kEpisodesPerSeries));
    bookmarks.emplace_back(at, std::move(movie_id));
  }
  std::stable_sort(bookmarks.begin(), bookmarks.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [at, movie_id] : bookmarks) {
    items.push_back({{"movie_id", std::move(movie_id)}, {"added_at", FormatUtcSeconds(at)}});
  }
  return items;
}

nlohmann::json SyntheticMovie(std::uint64_t seed, std::string_view movie_id) {
  if (movie_id.starts_with("movie-")) {
    if (!ParsePositive(movie_id.substr(6))) return nullptr;
    DetRandom random(seed, Fnv1a(movie_id), Stream::kMovie);
    auto movie = MovieBase(movie_id, "film", Title(random));
    movie["release_date"] = ReleaseDate(random, 1970, 2025);
    movie["genres"] = Genres(random);
    return movie;
  }
  if (movie_id.starts_with("ep-")) {
    const auto number = ParsePositive(movie_id.substr(3));
    if (!number) return nullptr;
    // Episodes are grouped into series so that ep-1 .. ep-96 share series-1's title.
    const auto series_id = fmt::format("series-{}", (*number - 1) / kEpisodesPerSeries + 1);
    DetRandom series_random(seed, Fnv1a(series_id), Stream::kMovie);
    auto movie = MovieBase(movie_id, "episode", Title(series_random));
    const auto position = (*number - 1) % kEpisodesPerSeries;
    movie["season"] = position / kEpisodesPerSeason + 1;
    movie["episode"] = position % kEpisodesPerSeason + 1;
    movie["series_id"] = series_id;
    DetRandom random(seed, Fnv1a(movie_id), Stream::kMovie);
    movie["release_date"] = ReleaseDate(random, 2015, 2025);
    movie["genres"] = Genres(series_random);
    return movie;
  }
  if (movie_id.starts_with("series-")) {
    if (!IsSlug(movie_id.substr(7))) return nullptr;
    DetRandom random(seed, Fnv1a(movie_id), Stream::kMovie);
    auto movie = MovieBase(movie_id, "series", Title(random));
    movie["season"] = 1 + random.Below(8);
    movie["episode"] = 1 + random.Below(kEpisodesPerSeason);
    movie["release_date"] = ReleaseDate(random, 2015, 2025);
    movie["genres"] = Genres(random);
    return movie;
  }
  return nullptr;
}

}  // namespace herald::dev
