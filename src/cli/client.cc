#include "cli/client.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "common/fsutil.h"

namespace kiln::cli {

using nlohmann::json;

Endpoint ResolveEndpoint(std::string endpoint, const std::string& data_dir) {
  if (endpoint.empty() && getenv("KILN_ENDPOINT")) endpoint = getenv("KILN_ENDPOINT");
  if (endpoint.empty()) {
    for (const std::string& d : {data_dir, std::string("./kiln-data")}) {
      if (d.empty()) continue;
      auto addr = ReadFile(d + "/kilnd.addr");
      if (addr.ok()) {
        endpoint = *addr;
        break;
      }
    }
  }
  if (endpoint.empty()) endpoint = "127.0.0.1:8470";
  while (!endpoint.empty() && isspace(static_cast<unsigned char>(endpoint.back()))) endpoint.pop_back();
  if (endpoint.rfind("http://", 0) == 0) endpoint = endpoint.substr(7);
  if (auto slash = endpoint.find('/'); slash != std::string::npos) endpoint = endpoint.substr(0, slash);
  Endpoint e;
  auto colon = endpoint.rfind(':');
  e.host = endpoint.substr(0, colon);
  if (colon != std::string::npos) e.port = atoi(endpoint.c_str() + colon + 1);
  return e;
}

std::string TokenFile() {
  const char* xdg = getenv("XDG_CONFIG_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/kiln/token";
  const char* home = getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.config/kiln/token";
}

std::string ResolveToken(std::string token, const std::string& data_dir) {
  if (token.empty() && getenv("KILN_API_TOKEN")) token = getenv("KILN_API_TOKEN");
  std::vector<std::string> files = {TokenFile()};
  for (const std::string& d : {data_dir, std::string("./kiln-data")})
    if (!d.empty()) files.push_back(d + "/admin.token");
  for (size_t i = 0; token.empty() && i < files.size(); ++i) {
    auto t = ReadFile(files[i]);
    if (t.ok()) token = *t;
  }
  while (!token.empty() && isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  return token;
}

std::string UrlEscape(const std::string& s) {
  return httplib::detail::encode_query_param(s);
}

KilndClient::KilndClient(Endpoint e, std::string token)
    : ep_(std::move(e)), token_(std::move(token)), cli_(ep_.host, ep_.port) {
  if (!token_.empty()) cli_.set_bearer_token_auth(token_);
  cli_.set_connection_timeout(5, 0);
  cli_.set_read_timeout(60, 0);
  cli_.set_tcp_nodelay(true);
}

void KilndClient::SetToken(const std::string& token) {
  token_ = token;
  cli_.set_bearer_token_auth(token_);
}

namespace {

void PrintHttpError(const httplib::Response& r, const json& body) {
  if (body.is_object() && body.contains("error")) {
    const auto& e = body["error"];
    std::string field = e.contains("field") && e["field"].is_string() ? e["field"].get<std::string>() : "";
    fprintf(stderr, "kiln: error %d %s%s: %s\n", r.status, e.value("code", "").c_str(),
            field.empty() ? "" : (" (field " + field + ")").c_str(), e.value("message", "").c_str());
  } else {
    fprintf(stderr, "kiln: error %d: %s\n", r.status, r.body.c_str());
  }
}

}  // namespace

std::optional<json> KilndClient::Call(const std::string& method, const std::string& path, const std::string& body,
                                      OnError on_error) {
  httplib::Result r = method == "POST"     ? cli_.Post(path, body, "application/json")
                      : method == "PUT"    ? cli_.Put(path, body, "application/octet-stream")
                      : method == "DELETE" ? cli_.Delete(path)
                                           : cli_.Get(path);
  const bool print = on_error == OnError::kPrint;
  if (!r) {
    if (print)
      fprintf(stderr, "kiln: cannot reach kilnd at %s:%d (%s). Is it running? Set --endpoint or KILN_ENDPOINT.\n",
              ep_.host.c_str(), ep_.port, httplib::to_string(r.error()).c_str());
    return std::nullopt;
  }
  json j = json::parse(r->body, nullptr, false);
  if (r->status >= 400) {
    if (print) PrintHttpError(*r, j);
    if (print && r->status == 401)
      fprintf(stderr, "kiln: log in with `kiln login` (a token from `kiln tokens create`), or set KILN_API_TOKEN\n");
    return std::nullopt;
  }
  if (r->body.empty()) return json::object();  // 204
  return j;
}

bool KilndClient::Stream(const std::string& path, const httplib::Headers& headers,
                         const std::function<bool(const char*, size_t)>& on_data,
                         std::chrono::milliseconds read_timeout) {
  httplib::Client c(ep_.host, ep_.port);
  if (!token_.empty()) c.set_bearer_token_auth(token_);
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(read_timeout);
  auto r = c.Get(path, headers, [&](const char* d, size_t n) { return on_data(d, n); });
  return static_cast<bool>(r);
}

bool SseParser::Feed(const char* data, size_t n) {
  buf_.append(data, n);
  size_t pos;
  while ((pos = buf_.find("\n\n")) != std::string::npos) {
    std::string frame = buf_.substr(0, pos);
    buf_.erase(0, pos + 2);
    SseEvent event;
    std::string payload;
    size_t start = 0;
    while (start < frame.size()) {
      size_t end = frame.find('\n', start);
      if (end == std::string::npos) end = frame.size();
      std::string l = frame.substr(start, end - start);
      if (l.rfind("id: ", 0) == 0) event.id = l.substr(4);
      if (l.rfind("event: ", 0) == 0) event.type = l.substr(7);
      if (l.rfind("data: ", 0) == 0) payload += l.substr(6);
      start = end + 1;
    }
    if (payload.empty()) continue;
    event.data = json::parse(payload, nullptr, false);
    if (!event.data.is_discarded() && !on_event_(event)) return false;
  }
  if (buf_.size() > kMaxFrameBytes) {
    fprintf(stderr, "kiln: an event from kilnd is over %zu bytes; stopped reading\n", kMaxFrameBytes);
    return false;
  }
  return true;
}

}  // namespace kiln::cli
