#include <catch2/catch.hpp>

#include "deliver/email.hpp"
#include "herald/dev/mail.hpp"

using namespace herald::consumers::deliver;

TEST_CASE("addresses that could inject headers or SMTP commands are refused", "[email]") {
  CHECK(IsSafeAddress("u-1@example.test"));
  CHECK(IsSafeAddress("first.last+tag@sub.example.org"));
  for (const char* bad : {"", "no-at-sign", "a@b", "@example.test", "a@@example.test", "a@example.test\r\nRCPT TO:<x@y.z>",
                          "a@example.test\nBcc: victim@example.test", "a b@example.test", "<a@example.test>",
                          "a@example.test>", "a\x01@example.test"}) {
    INFO(bad);
    CHECK_FALSE(IsSafeAddress(bad));
  }
}

TEST_CASE("non-ASCII subjects are RFC 2047 encoded and decode back", "[email]") {
  CHECK(EncodeHeaderWord("Hello") == "Hello");
  std::string subject = "Добро пожаловать в Herald Cinema, Ольга! Новые серии каждую неделю";
  auto encoded = EncodeHeaderWord(subject);
  CHECK(encoded.rfind("=?UTF-8?B?", 0) == 0);
  for (std::size_t start = 0; start < encoded.size();) {
    auto end = encoded.find("\r\n ", start);
    auto line = encoded.substr(start, end == std::string::npos ? std::string::npos : end - start);
    CHECK(line.size() <= 76);
    if (end == std::string::npos) break;
    start = end + 3;
  }
  CHECK(herald::dev::DecodeHeader(encoded) == subject);
}

TEST_CASE("the MIME message has both parts, a Message-ID and unsubscribe headers", "[email]") {
  Email e;
  e.to = "u-1@example.test";
  e.to_name = "Ольга";
  e.subject = "Привет";
  e.text = "Текст письма\n";
  e.html = "<p>Текст</p>";
  e.message_id = "abc@herald";
  e.list_unsubscribe = "https://cinema.example/u/token";
  auto mime = BuildMime(e, "Herald Cinema <noreply@cinema.example>", "Sat, 21 Nov 2026 10:00:00 +0000");
  CHECK(mime.find("Message-ID: <abc@herald>\r\n") != std::string::npos);
  CHECK(mime.find("List-Unsubscribe: <https://cinema.example/u/token>\r\n") != std::string::npos);
  CHECK(mime.find("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n") != std::string::npos);
  CHECK(mime.find("multipart/alternative") != std::string::npos);
  auto parsed = herald::dev::ParseMail(mime);
  CHECK(parsed.subject == "Привет");
  CHECK(parsed.to == "Ольга <u-1@example.test>");
  CHECK(parsed.text == e.text);
  CHECK(parsed.html == e.html);
  CHECK(parsed.message_id == "<abc@herald>");
}

TEST_CASE("names, subjects and URLs cannot inject headers", "[email][security]") {
  Email e;
  e.to = "u-1@example.test";
  e.to_name = "Eve\r\nBcc: victim@example.test";
  e.subject = "Hi\r\nBcc: victim@example.test\nX-Evil: 1";
  e.text = "body\r\n.\r\nMAIL FROM:<x@y>\r\n";
  e.message_id = "inj@herald";
  e.list_unsubscribe = "https://cinema.example/u?token=x>\r\nBcc: victim@example.test";
  auto mime = BuildMime(e, "Herald Cinema <noreply@cinema.example>", "Sat, 21 Nov 2026 10:00:00 +0000");
  // Every header line is one we wrote: nothing smuggled a line break into the header block.
  auto header_end = mime.find("\r\n\r\n");
  REQUIRE(header_end != std::string::npos);
  std::string headers = mime.substr(0, header_end + 2);
  CHECK(headers.find("Bcc") == std::string::npos);
  CHECK(headers.find("X-Evil") == std::string::npos);
  CHECK(headers.find("List-Unsubscribe") == std::string::npos);  // the unsafe URL was dropped
  std::size_t pos = 0;
  while (pos < headers.size()) {
    auto eol = headers.find("\r\n", pos);
    std::string line = headers.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.empty() || line[0] == ' ') continue;  // a folded continuation of an encoded word
    auto name = line.substr(0, line.find(':'));
    CHECK((name == "From" || name == "To" || name == "Subject" || name == "Date" || name == "Message-ID" ||
           name == "MIME-Version" || name == "Content-Type"));
  }
  // The name and subject survive intact, as encoded words.
  auto parsed = herald::dev::ParseMail(mime);
  CHECK(parsed.subject == e.subject);
  // The body is base64: a line with a lone "." cannot end the SMTP DATA early.
  CHECK(mime.find("\r\n.\r\n") == std::string::npos);
}
