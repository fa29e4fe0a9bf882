#include "herald/common/time.hpp"

#include <cctype>
#include <cstdio>
#include <fstream>

#include "herald/common/errors.hpp"

namespace herald {
namespace {

bool Digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

}  // namespace

std::optional<TimePoint> ParseRfc3339(std::string_view s) {
  using namespace std::chrono;
  int y, mo, d, h, mi, se;
  if (!Digits(s, 0, 4, y) || s.size() < 20 || s[4] != '-' || !Digits(s, 5, 2, mo) || s[7] != '-' ||
      !Digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !Digits(s, 11, 2, h) || s[13] != ':' || !Digits(s, 14, 2, mi) || s[16] != ':' ||
      !Digits(s, 17, 2, se)) {
    return std::nullopt;
  }
  year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || h > 23 || mi > 59 || se > 60) return std::nullopt;
  std::size_t pos = 19;
  milliseconds frac{0};
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    std::size_t start = pos;
    int ms = 0;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
      if (pos - start < 3) ms = ms * 10 + (s[pos] - '0');
      ++pos;
    }
    if (pos == start) return std::nullopt;
    for (std::size_t k = pos - start; k < 3; ++k) ms *= 10;
    frac = milliseconds{ms};
  }
  if (pos >= s.size()) return std::nullopt;
  minutes offset{0};
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    int oh, om;
    if (!Digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !Digits(s, pos + 4, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset = hours{oh} + minutes{om};
    if (s[pos] == '-') offset = -offset;
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  auto tp = sys_days{ymd} + hours{h} + minutes{mi} + seconds{se > 59 ? 59 : se} + frac - offset;
  return time_point_cast<milliseconds>(tp);
}

std::string FormatRfc3339(TimePoint tp) {
  using namespace std::chrono;
  auto day_point = floor<days>(tp);
  year_month_day ymd{day_point};
  hh_mm_ss<milliseconds> t{tp - day_point};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(t.hours().count()), static_cast<int>(t.minutes().count()),
                static_cast<int>(t.seconds().count()), static_cast<int>(t.subseconds().count()));
  return buf;
}

TimePoint NowMs() { return std::chrono::time_point_cast<std::chrono::milliseconds>(Clock::now()); }

namespace {

class SystemSource final : public TimeSource {
 public:
  TimePoint Now() const override { return NowMs(); }
};

class FileSource final : public TimeSource {
 public:
  explicit FileSource(std::string path) : path_(std::move(path)) {}
  TimePoint Now() const override {
    std::ifstream in(path_);
    std::string text;
    if (!in || !std::getline(in, text)) throw TransientError("clock file " + path_ + " cannot be read");
    while (!text.empty() && (text.back() == '\r' || text.back() == ' ')) text.pop_back();
    auto t = ParseRfc3339(text);
    if (!t) throw TransientError("clock file " + path_ + " does not hold an RFC 3339 instant: '" + text + "'");
    return *t;
  }

 private:
  std::string path_;
};

}  // namespace

std::shared_ptr<const TimeSource> TimeSource::FromSpec(const std::string& spec) {
  if (spec.empty() || spec == "system") return std::make_shared<SystemSource>();
  if (spec.rfind("file:", 0) == 0 && spec.size() > 5) return std::make_shared<FileSource>(spec.substr(5));
  throw ConfigError("HERALD_CLOCK must be 'system' or 'file:/path', got '" + spec + "'");
}

}  // namespace herald
