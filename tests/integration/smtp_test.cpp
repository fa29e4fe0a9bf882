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
  // With tls: a self-signed certificate for 127.0.0.1; the sink requires STARTTLS.
  explicit Sink(bool tls = false) {
    std::string tls_args;
    if (tls) {
      REQUIRE(herald::test::Run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
                                dir.Path() + "/key.pem -out " + Cert() + " >/dev/null 2>&1") == 0);
      tls_args = " --tls-cert " + Cert() + " --tls-key " + dir.Path() + "/key.pem";
    }
    std::string script = dir.Path() + "/smtp_sink.py";
    for (const auto& f : herald::embedded::DevScripts()) {
      if (f.path == "smtp_sink.py") std::ofstream(script) << f.content;
    }
    REQUIRE(herald::test::Run("/usr/bin/python3 " + script + " --port " + std::to_string(port) + " --dir " + dir.Path() +
                              "/mail" + tls_args + " >/dev/null 2>&1 & echo $! > " + dir.Path() + "/pid") == 0);
    REQUIRE(herald::test::WaitUntil(
        [&] { return herald::test::Run("bash -c 'exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(port) + "' 2>/dev/null") == 0; }, 20s, 50ms));
  }
  ~Sink() { herald::test::Run("kill $(cat " + dir.Path() + "/pid) 2>/dev/null"); }
  std::string Url() const { return "smtp://127.0.0.1:" + std::to_string(port); }
  std::string Cert() const { return dir.Path() + "/cert.pem"; }
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

TEST_CASE("STARTTLS is used when the server offers it, and the certificate is verified", "[smtp][tls]") {
  Sink sink(/*tls=*/true);
  SmtpSender sender({sink.Url(), "Herald <noreply@cinema.example>", "", "", 2000ms, 10000ms, sink.Cert()});
  CHECK(sender.Send(Mail("tls-1@example.test")).result == SendResult::kSent);
  CHECK(sender.Send(Mail("tls-2@example.test")).result == SendResult::kSent);
  REQUIRE(herald::test::WaitUntil([&] { return herald::dev::ReadMailDir(sink.dir.Path() + "/mail").size() == 2; }, 10s));
  for (const auto& m : herald::dev::ReadMailDir(sink.dir.Path() + "/mail")) {
    CHECK(m.raw.find("X-Herald-Tls: yes\r\n") != std::string::npos);  // the session was encrypted
  }
  // A certificate that does not verify is not silently accepted: the send is retried later.
  SmtpSender untrusting({sink.Url(), "Herald <noreply@cinema.example>", "", "", 2000ms, 10000ms, "/nonexistent-ca.pem"});
  auto o = untrusting.Send(Mail("tls-3@example.test"));
  CHECK(o.result == SendResult::kRetryLater);
  INFO(o.detail);
  CHECK(herald::dev::ReadMailDir(sink.dir.Path() + "/mail").size() == 2);
}
