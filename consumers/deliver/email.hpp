#pragma once
// Email over SMTP with libcurl: one reused connection per sender, STARTTLS when the server
// offers it, multipart/alternative text + HTML, RFC 2047 subjects, Message-ID.
// Not thread-safe: one sender per delivery thread.

#include <chrono>
#include <memory>
#include <string>

namespace herald::consumers::deliver {

enum class SendResult { kSent, kRetryLater, kRejected };

struct Email {
  std::string to;         // bare address
  std::string to_name;    // display name, may be empty
  std::string subject;
  std::string text;
  std::string html;
  std::string message_id; // without angle brackets
  std::string list_unsubscribe;  // URL, may be empty
};

/// true when `address` is a plausible mailbox with no characters that could break a header
/// or an SMTP command (CR, LF, <, >, spaces, control characters).
bool IsSafeAddress(const std::string& address);

/// "=?UTF-8?B?...?=" when `text` is not plain printable ASCII, else `text` unchanged.
std::string EncodeHeaderWord(const std::string& text);

/// The full RFC 5322 message. `from` is "Name <addr>" or "addr".
std::string BuildMime(const Email& email, const std::string& from, const std::string& date);

class SmtpSender {
 public:
  struct Options {
    std::string url = "smtp://127.0.0.1:2525";
    std::string from = "Herald Cinema <noreply@cinema.example>";
    std::string user;
    std::string password;
    std::chrono::milliseconds connect_timeout{2000};
    std::chrono::milliseconds timeout{15000};
    std::string ca_file;  // CA bundle to verify the server's certificate (default: the system's)
  };
  explicit SmtpSender(Options options);
  ~SmtpSender();

  struct Outcome {
    SendResult result = SendResult::kRetryLater;
    std::string detail;  // server reply or transport error
    bool throttled = false;  // 421: the server asks to slow down (not a failure of this message)
  };
  Outcome Send(const Email& email);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::consumers::deliver
