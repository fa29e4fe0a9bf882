#include "deliver/email.hpp"

#include <algorithm>
#include <cstring>
#include <ctime>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "herald/common/errors.hpp"
#include "herald/common/ids.hpp"

namespace herald::consumers::deliver {
namespace {

struct EasyDeleter {
  void operator()(CURL* c) const noexcept { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};

std::string Base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// Base64 body folded at 76 characters per line (RFC 2045).
std::string Base64Lines(const std::string& in) {
  std::string b = Base64(in), out;
  for (std::size_t i = 0; i < b.size(); i += 76) out += b.substr(i, 76) + "\r\n";
  return out;
}

std::string AddressOf(const std::string& from) {
  auto lt = from.find('<');
  auto gt = from.find('>');
  if (lt != std::string::npos && gt != std::string::npos && gt > lt) return from.substr(lt + 1, gt - lt - 1);
  return from;
}

std::string FormatFrom(const std::string& from) {
  auto lt = from.find('<');
  if (lt == std::string::npos || lt == 0) return from;
  std::string name = from.substr(0, lt);
  while (!name.empty() && name.back() == ' ') name.pop_back();
  return EncodeHeaderWord(name) + " " + from.substr(lt);
}

struct Upload {
  const std::string* data;
  std::size_t pos = 0;
};

size_t ReadUpload(char* buf, size_t size, size_t n, void* user) {
  auto* u = static_cast<Upload*>(user);
  size_t len = std::min(size * n, u->data->size() - u->pos);
  std::memcpy(buf, u->data->data() + u->pos, len);
  u->pos += len;
  return len;
}

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

}  // namespace

bool IsSafeAddress(const std::string& a) {
  if (a.empty() || a.size() > 254) return false;
  auto at = a.find('@');
  if (at == std::string::npos || at == 0 || at == a.size() - 1 || a.find('@', at + 1) != std::string::npos) {
    return false;
  }
  for (unsigned char c : a) {
    if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == '(' || c == ')' || c == ',' ||
        c == ';' || c == ':' || c == '\\' || c == '"' || c == '[' || c == ']') {
      return false;
    }
  }
  return a.find('.', at) != std::string::npos;
}

std::string EncodeHeaderWord(const std::string& text) {
  bool plain = true;
  for (unsigned char c : text) {
    if (c < 0x20 || c >= 0x7f) plain = false;
  }
  if (plain) return text;
  // Encoded words are limited to 75 characters: split on UTF-8 character boundaries.
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t end = std::min(text.size(), i + 45);
    while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?" + Base64(text.substr(i, end - i)) + "?=";
    i = end;
  }
  return out;
}

std::string BuildMime(const Email& e, const std::string& from, const std::string& date) {
  std::string boundary = "herald-" + Sha256Hex(e.message_id).substr(0, 24);
  std::string to = e.to_name.empty() ? e.to : EncodeHeaderWord(e.to_name) + " <" + e.to + ">";
  std::string m;
  m += "From: " + FormatFrom(from) + "\r\n";
  m += "To: " + to + "\r\n";
  m += "Subject: " + EncodeHeaderWord(e.subject) + "\r\n";
  m += "Date: " + date + "\r\n";
  m += "Message-ID: <" + e.message_id + ">\r\n";
  // The URL goes into a header verbatim: only printable ASCII without angle brackets.
  bool url_safe = std::all_of(e.list_unsubscribe.begin(), e.list_unsubscribe.end(), [](char c) {
    return c > 0x20 && c < 0x7f && c != '<' && c != '>';
  });
  if (!e.list_unsubscribe.empty() && url_safe) {
    m += "List-Unsubscribe: <" + e.list_unsubscribe + ">\r\n";
    m += "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n";
  }
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n\r\n";
  m += "--" + boundary + "\r\nContent-Type: text/plain; charset=UTF-8\r\n"
       "Content-Transfer-Encoding: base64\r\n\r\n" + Base64Lines(e.text);
  if (!e.html.empty()) {
    m += "--" + boundary + "\r\nContent-Type: text/html; charset=UTF-8\r\n"
         "Content-Transfer-Encoding: base64\r\n\r\n" + Base64Lines(e.html);
  }
  m += "--" + boundary + "--\r\n";
  return m;
}

struct SmtpSender::Impl {
  Options options;
  std::unique_ptr<CURL, EasyDeleter> easy;
};

SmtpSender::SmtpSender(Options options) : impl_(std::make_unique<Impl>()) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  impl_->options = std::move(options);
  impl_->easy.reset(curl_easy_init());
  if (!impl_->easy) throw TransientError("curl_easy_init failed");
}

SmtpSender::~SmtpSender() = default;

SmtpSender::Outcome SmtpSender::Send(const Email& email) {
  if (!IsSafeAddress(email.to)) {
    return {SendResult::kRejected, "invalid recipient address"};
  }
  char date[64];
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  std::string message = BuildMime(email, impl_->options.from, date);

  CURL* c = impl_->easy.get();
  curl_easy_reset(c);  // keeps the open SMTP connection for reuse
  std::string rcpt = "<" + email.to + ">";
  std::string mail_from = "<" + AddressOf(impl_->options.from) + ">";
  std::unique_ptr<curl_slist, SlistDeleter> rcpts{curl_slist_append(nullptr, rcpt.c_str())};
  Upload upload{&message};
  curl_easy_setopt(c, CURLOPT_URL, impl_->options.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_TRY));  // STARTTLS when offered
  if (!impl_->options.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, impl_->options.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_FROM, mail_from.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpts.get());
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadUpload);
  curl_easy_setopt(c, CURLOPT_READDATA, &upload);
  curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(message.size()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(impl_->options.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(impl_->options.timeout.count()));
  if (!impl_->options.user.empty()) {
    curl_easy_setopt(c, CURLOPT_USERNAME, impl_->options.user.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, impl_->options.password.c_str());
  }
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode rc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (rc == CURLE_OK) return {SendResult::kSent, "250"};
  std::string detail = std::string(errbuf[0] ? errbuf : curl_easy_strerror(rc)) + " (SMTP " + std::to_string(code) + ")";
  // Only a refusal of this recipient or this message is permanent: 550/551/553 (no such
  // mailbox, not local, bad mailbox name) and 552/554 when they answer the recipient or the
  // data. Everything else — 4xx, authentication (535/530), a refused greeting or sender,
  // timeouts, resets — is about the server or Herald's configuration and is retried.
  // libcurl reports a refused RCPT as "RCPT failed: <code>" and a refused message (the
  // reply to the data) as CURLE_WEIRD_SERVER_REPLY; a refused MAIL FROM says "MAIL failed".
  bool recipient_refused = std::strstr(errbuf, "RCPT") != nullptr || rc == CURLE_WEIRD_SERVER_REPLY;
  if (rc != CURLE_LOGIN_DENIED && recipient_refused &&
      (code == 550 || code == 551 || code == 552 || code == 553 || code == 554)) {
    return {SendResult::kRejected, detail};
  }
  // 421 is the server closing the channel on us, typically a rate or connection limit.
  return {SendResult::kRetryLater, detail, code == 421};
}

}  // namespace herald::consumers::deliver
