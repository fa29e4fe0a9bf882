// The SMTP sender against a real SMTP server (the aiosmtpd sink): accepted, permanently
// refused and temporarily refused recipients, connection reuse, and what arrives.

#include <catch2/catch.hpp>

#include <fstream>

#include "deliver/email.hpp"
#include "herald/common/embedded.hpp"
#include "herald/dev/mail.hpp"
#include "herald/dev/stack.hpp"
#include "support/support.hpp"

using namespace herald::consumers::deliver;
using namespace std::chrono_literals;

namespace {

struct Sink {
  herald::test::TempDir dir;
  int port = herald::dev::FreePort();
  Sink() {
    std::string script = dir.Path() + "/smtp_sink.py";
    for (const auto& f : herald::embedded::DevScripts()) {
      if (f.path == "smtp_sink.py") std::ofstream(script) << f.content;
    }
    REQUIRE(herald::test::Run("/usr/bin/python3 " + script + " --port " + std::to_string(port) + " --dir " + dir.Path() +
                              "/mail >/dev/null 2>&1 & echo $! > " + dir.Path() + "/pid") == 0);
    REQUIRE(herald::test::WaitUntil(
        [&] { return herald::test::Run("bash -c 'exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(port) + "' 2>/dev/null") == 0; }, 20s, 50ms));
  }
  ~Sink() { herald::test::Run("kill $(cat " + dir.Path() + "/pid) 2>/dev/null"); }
  std::string Url() const { return "smtp://127.0.0.1:" + std::to_string(port); }
};

Email Mail(const std::string& to) {
  Email e;
  e.to = to;
  e.to_name = "Тест";
  e.subject = "Проверка";
  e.text = "text\n";
  e.html = "<p>html</p>";
  e.message_id = to + ".id@herald";
  return e;
}

}  // namespace

TEST_CASE("SMTP outcomes are classified by what the server said", "[smtp]") {
  Sink sink;
  SmtpSender sender({sink.Url(), "Herald <noreply@cinema.example>", "", "", 2000ms, 10000ms});
  CHECK(sender.Send(Mail("ok-1@example.test")).result == SendResult::kSent);
  auto bounce = sender.Send(Mail("bounce-1@example.test"));
  CHECK(bounce.result == SendResult::kRejected);
  CHECK(bounce.detail.find("550") != std::string::npos);
  auto temp = sender.Send(Mail("tempfail-1@example.test"));
  CHECK(temp.result == SendResult::kRetryLater);
  CHECK(temp.detail.find("451") != std::string::npos);
  CHECK(sender.Send(Mail("ok-2@example.test")).result == SendResult::kSent);  // the connection is still usable
  CHECK(sender.Send(Mail("evil@example.test\r\nRCPT TO:<x@y.z>")).result == SendResult::kRejected);

  REQUIRE(herald::test::WaitUntil([&] { return herald::dev::ReadMailDir(sink.dir.Path() + "/mail").size() == 2; }, 10s));
  auto mails = herald::dev::ReadMailDir(sink.dir.Path() + "/mail");
  CHECK(mails[0].rcpt == "ok-1@example.test");
  CHECK(mails[0].subject == "Проверка");
  CHECK(mails[0].html == "<p>html</p>");
  CHECK(mails[1].rcpt == "ok-2@example.test");
}

TEST_CASE("an unreachable SMTP server is a transient failure", "[smtp]") {
  SmtpSender sender({"smtp://127.0.0.1:1", "Herald <noreply@cinema.example>", "", "", 500ms, 2000ms});
  CHECK(sender.Send(Mail("ok@example.test")).result == SendResult::kRetryLater);
}
