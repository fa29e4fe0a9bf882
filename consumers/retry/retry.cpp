#include "herald/common/errors.hpp"
#include "herald/common/logging.hpp"
#include "herald/stage/stage.hpp"
#include "herald/topics/catalog.hpp"
#include "stages.hpp"

namespace herald::consumers {

// Records in one retry tier arrive in due order (same delay, appended in time order), so
// when the head of a partition is not due yet, nothing after it is either: the partition is
// paused until then and rewound to that record. Other partitions and tiers keep flowing.
int RunRetry(const config::Config& config) {
  const auto& catalog = topics::Catalog();
  std::vector<std::string> inputs;
  for (const auto* t : catalog.Family("retry")) inputs.push_back(t->name);
  stage::Stage st(config, {"retry", inputs});
  auto& redriven = st.Metrics().GetCounter("herald_retry_redriven_total", "Records re-produced to their origin topic");
  auto& waits = st.Metrics().GetCounter("herald_retry_waits_total", "Times a retry partition was paused until due");

  return st.Run([&](std::span<const kafka::Message> batch, kafka::BatchContext& ctx) {
    auto now = NowMs().time_since_epoch().count();
    for (const auto& m : batch) {
      if (ctx.IsDeferred(m)) continue;
      auto origin = m.HeaderValue("herald-origin-topic");
      auto due = m.HeaderValue("herald-retry-not-before");
      std::int64_t due_ms = 0;
      try {
        if (due) due_ms = std::stoll(std::string(*due));
      } catch (const std::exception&) {
        due.reset();
      }
      if (!origin || !due || !catalog.Find(*origin)) {
        st.DeadLetter(ctx, m, "schema",
                      "retry record without a valid herald-origin-topic / herald-retry-not-before header");
        continue;
      }
      if (due_ms > now) {
        ctx.Defer(m);
        ctx.PauseFor(m, std::chrono::milliseconds(due_ms - now));
        waits.Inc();
        continue;
      }
      kafka::OutRecord rec;
      rec.topic = std::string(*origin);
      if (auto k = m.Key()) rec.key = std::string(*k);
      rec.value = std::string(m.Value());
      for (auto& h : m.Headers()) {
        if (h.key.rfind("herald-retry-", 0) == 0) continue;  // keep origin and attempt
        rec.headers.push_back(std::move(h));
      }
      st.Produce(ctx, rec);
      redriven.Inc();
    }
  });
}

}  // namespace herald::consumers
