#pragma once
// The only way a route joins kilnd's HTTP server: each carries its access rule,
// and every request passes the same gate before its handler runs.
//   1. Origin: a request that names an Origin not in `allowed_origins` is refused
//      (403): no web page can drive the API from a user's browser.
//   2. Authentication: routes other than kOpen and kInstance need
//      `Authorization: Bearer <token>`; no, a wrong, revoked or expired token is
//      401 with nothing done. Failed attempts are limited per source address (429).
//   3. Role: the route's least role (403 below it); team scoping is the handler's,
//      which answers NotFound for another team's resource.
//   4. Body: routes that take JSON take only application/json (415), so a browser
//      form can never be a request.
//   5. Rate: requests per principal (429 when its bucket is empty).
//   6. Audit: every request that is not a GET is recorded (who, team, what, when,
//      from where, the status answered), refused ones included.
// The rules are kept (rules()) so that the access-matrix test covers every route.
#include <httplib.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "auth/api_tokens.h"
#include "auth/auth_limiter.h"
#include "auth/oidc.h"
#include "auth/principal.h"
#include "common/clock.h"
#include "http/route_table.h"
#include "store/store.h"

namespace kiln {

enum class Access {
  kOpen,      // anyone (health)
  kInstance,  // an instance token, checked by the handler (the in-job runtime routes)
  kViewer,    // an API token of at least this role
  kMember,
  kTeamAdmin,
  kAdmin,
};
const char* ToString(Access a);
// The least role a rule needs; nullopt for kOpen and kInstance (no API token).
std::optional<Role> LeastRole(Access a);

enum class Body { kNone, kJson, kBytes };

struct RouteRule {
  std::string method;
  std::string pattern;
  Access access = Access::kAdmin;
  Body body = Body::kNone;
};

struct RouterOptions {
  std::vector<std::string> allowed_origins;  // exact "scheme://host[:port]"; empty: none
  // Streams (event streams, log reads) open at once, in all and per principal:
  // each costs a connection and a little memory, not a thread.
  int max_streams = 16384;
  int max_streams_per_principal = 256;
  AuthLimits limits;
  Store* audit = nullptr;  // null: no audit log
  // Identity-provider tokens (JWTs) besides kilnd's API tokens; null: none.
  const OidcVerifier* oidc = nullptr;
  Clock* clock = nullptr;  // null: the real clock
};

class Router {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&, const Principal&)>;
  // A GET whose body is a stream (http/stream.h); null for an answer in `res`.
  using StreamHandler =
      std::function<std::shared_ptr<http::StreamSource>(const httplib::Request&, httplib::Response&, const Principal&)>;
  // `tokens` may be null only if no route needs a credential.
  Router(http::RouteTable& server, const ApiTokens* tokens, RouterOptions opts);

  void Get(const std::string& pattern, Access access, Handler h);
  void Post(const std::string& pattern, Access access, Body body, Handler h);
  void Put(const std::string& pattern, Access access, Body body, Handler h);
  void Delete(const std::string& pattern, Access access, Handler h);
  // A POST that takes no body, answered before one is read (httplib's
  // ContentReader overload): `curl -X POST` without Content-Length works.
  void PostWithoutBody(const std::string& pattern, Access access, Handler h);
  void Stream(const std::string& pattern, Access access, StreamHandler h);

  const std::vector<RouteRule>& rules() const { return rules_; }

 private:
  // The gate (steps 1-5); true when the handler may run, with `who` filled in.
  bool Admit(const RouteRule& rule, const httplib::Request& req, httplib::Response& res, Principal& who);
  void Audit(const httplib::Request& req, const httplib::Response& res, const Principal& who);
  void Add(const RouteRule& rule, http::ReadBody read, StreamHandler h);
  TimeMs Now() const;

  http::RouteTable& server_;
  const ApiTokens* tokens_;
  RouterOptions opts_;
  AuthLimiter limiter_;
  std::vector<RouteRule> rules_;
};

// Bounds the streams open at once, in all and per principal, so that one caller
// cannot take every connection kilnd may hold.
class StreamSlots {
 public:
  StreamSlots(int max_total, int max_per_principal) : max_total_(max_total), max_per_(max_per_principal) {}
  // A slot for `principal`, freed when the last copy of the handle goes; or
  // kResourceExhausted naming the limit.
  Result<std::shared_ptr<void>> Acquire(const std::string& principal);
  int open() const;

 private:
  void Release(const std::string& principal);
  const int max_total_, max_per_;
  mutable std::mutex mu_;
  int total_ = 0;
  std::map<std::string, int> per_;
};

// The native API's error body: {"error": {"code", "message", "field"}}.
void SendApiError(httplib::Response& res, const Status& st);

}  // namespace kiln
