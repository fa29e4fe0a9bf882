#include <catch2/catch.hpp>

#include "herald/cache/two_level.hpp"

using herald::cache::TwoLevelCache;

TEST_CASE("the in-process level evicts the least recently used entry", "[cache]") {
  herald::metrics::Registry m;
  TwoLevelCache c({"user", 2, std::chrono::seconds(60), std::chrono::seconds(60)}, nullptr, m);
  c.PutMany({{"a", 1}, {"b", 2}});
  CHECK(c.GetMany({"a"}).at("a") == 1);  // a is now the most recent
  c.PutMany({{"c", 3}});                 // evicts b
  auto got = c.GetMany({"a", "b", "c"});
  CHECK(got.count("a") == 1);
  CHECK(got.count("b") == 0);
  CHECK(got.count("c") == 1);
  CHECK(c.LruSize() == 2);
  auto text = m.Render();
  CHECK(text.find("herald_cache_lookups_total{cache=\"user\",result=\"lru_hit\"} 3") != std::string::npos);
  CHECK(text.find("herald_cache_lookups_total{cache=\"user\",result=\"miss\"} 1") != std::string::npos);
}

TEST_CASE("expired in-process entries are misses", "[cache]") {
  herald::metrics::Registry m;
  TwoLevelCache c({"movie", 10, std::chrono::seconds(0), std::chrono::seconds(60)}, nullptr, m);
  c.PutMany({{"a", 1}});
  CHECK(c.GetMany({"a"}).empty());
}
