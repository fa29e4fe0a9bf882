#include "herald/dev/mail.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "herald/common/errors.hpp"

namespace herald::dev {
namespace fs = std::filesystem;
namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Splits a message into unfolded headers (lower-case names) and body.
void SplitMessage(const std::string& raw, std::vector<std::pair<std::string, std::string>>& headers,
                  std::string& body) {
  auto end = raw.find("\r\n\r\n");
  std::size_t skip = 4;
  if (end == std::string::npos) {
    end = raw.find("\n\n");
    skip = 2;
  }
  std::string head = raw.substr(0, end);
  body = end == std::string::npos ? "" : raw.substr(end + skip);
  std::istringstream in(head);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t') && !headers.empty()) {
      headers.back().second += line.substr(1);
      continue;
    }
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    headers.emplace_back(Lower(line.substr(0, colon)), value);
  }
}

std::string Header(const std::vector<std::pair<std::string, std::string>>& h, const std::string& name) {
  for (const auto& [k, v] : h) {
    if (k == name) return v;
  }
  return "";
}

std::string DecodeBody(const std::vector<std::pair<std::string, std::string>>& h, const std::string& body) {
  if (Lower(Header(h, "content-transfer-encoding")) == "base64") return Base64Decode(body);
  return body;
}

}  // namespace

std::string Base64Decode(const std::string& in) {
  static const std::string kChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (unsigned char c : in) {
    auto pos = kChars.find(static_cast<char>(c));
    if (pos == std::string::npos) continue;  // whitespace, padding
    val = (val << 6) + static_cast<int>(pos);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

std::string DecodeHeader(const std::string& value) {
  std::string out;
  std::size_t pos = 0;
  bool last_was_word = false;
  while (pos < value.size()) {
    auto start = value.find("=?", pos);
    if (start == std::string::npos) {
      out += value.substr(pos);
      break;
    }
    std::string between = value.substr(pos, start - pos);
    // Whitespace between two encoded words is not part of the text (RFC 2047 6.2).
    if (!(last_was_word && between.find_first_not_of(" \t\r\n") == std::string::npos)) out += between;
    auto q1 = value.find('?', start + 2);
    auto q2 = q1 == std::string::npos ? q1 : value.find('?', q1 + 1);
    auto endw = q2 == std::string::npos ? q2 : value.find("?=", q2 + 1);
    if (endw == std::string::npos) {
      out += value.substr(start);
      break;
    }
    char enc = static_cast<char>(std::toupper(value[q1 + 1]));
    std::string text = value.substr(q2 + 1, endw - q2 - 1);
    if (enc == 'B') {
      out += Base64Decode(text);
    } else {
      for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '_') out += ' ';
        else if (text[i] == '=' && i + 2 < text.size()) {
          out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
          i += 2;
        } else out += text[i];
      }
    }
    pos = endw + 2;
    last_was_word = true;
  }
  return out;
}

CapturedMail ParseMail(const std::string& raw) {
  CapturedMail m;
  m.raw = raw;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  SplitMessage(raw, headers, body);
  if (headers.empty()) throw InvalidInput("not a MIME message");
  m.rcpt = Header(headers, "x-herald-rcpt");
  m.from = DecodeHeader(Header(headers, "from"));
  m.to = DecodeHeader(Header(headers, "to"));
  m.subject = DecodeHeader(Header(headers, "subject"));
  m.message_id = Header(headers, "message-id");
  std::string ctype = Header(headers, "content-type");
  auto b = ctype.find("boundary=");
  if (b == std::string::npos) {
    m.text = DecodeBody(headers, body);
    return m;
  }
  std::string boundary = ctype.substr(b + 9);
  if (!boundary.empty() && boundary[0] == '"') boundary = boundary.substr(1, boundary.find('"', 1) - 1);
  std::string delim = "--" + boundary;
  std::size_t pos = body.find(delim);
  while (pos != std::string::npos) {
    pos += delim.size();
    if (body.compare(pos, 2, "--") == 0) break;
    auto next = body.find(delim, pos);
    std::string part = body.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    std::vector<std::pair<std::string, std::string>> ph;
    std::string pbody;
    SplitMessage(part.substr(part.find_first_not_of("\r\n")), ph, pbody);
    std::string pt = Lower(Header(ph, "content-type"));
    if (pt.rfind("text/plain", 0) == 0) m.text = DecodeBody(ph, pbody);
    if (pt.rfind("text/html", 0) == 0) m.html = DecodeBody(ph, pbody);
    pos = next;
  }
  return m;
}

std::vector<CapturedMail> ReadMailDir(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".eml") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  std::vector<CapturedMail> out;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    auto m = ParseMail(ss.str());
    m.file = f;
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace herald::dev
