#pragma once
// Reading what the development SMTP sink captured: one .eml file per message.

#include <string>
#include <vector>

namespace herald::dev {

struct CapturedMail {
  std::string file;
  std::string rcpt;     // envelope recipient(s)
  std::string from;
  std::string to;       // decoded
  std::string subject;  // decoded (RFC 2047)
  std::string message_id;
  std::string text;     // decoded text/plain part
  std::string html;     // decoded text/html part
  std::string raw;
};

/// Decodes RFC 2047 encoded words (B and Q, UTF-8) in a header value.
std::string DecodeHeader(const std::string& value);
std::string Base64Decode(const std::string& in);
/// Parses one captured message; throws InvalidInput if it is not a MIME message.
CapturedMail ParseMail(const std::string& raw);
/// Every message in `dir`, oldest first (file names sort by arrival).
std::vector<CapturedMail> ReadMailDir(const std::string& dir);

}  // namespace herald::dev
