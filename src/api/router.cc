#include "api/router.h"

#include <algorithm>

namespace kiln {
namespace {

// The token of an `Authorization: Bearer <token>` header; "" if there is none.
std::string BearerToken(const httplib::Request& req) {
  const std::string h = req.get_header_value("Authorization");
  constexpr std::string_view kScheme = "Bearer ";
  if (h.size() <= kScheme.size() || strncasecmp(h.c_str(), kScheme.data(), kScheme.size()) != 0) return "";
  return h.substr(kScheme.size());
}

bool IsJson(const std::string& content_type) {
  const std::string t = content_type.substr(0, content_type.find(';'));
  return strcasecmp(t.c_str(), "application/json") == 0;
}

}  // namespace

std::optional<Role> LeastRole(Access a) {
  switch (a) {
    case Access::kViewer:
      return Role::kViewer;
    case Access::kMember:
      return Role::kMember;
    case Access::kTeamAdmin:
      return Role::kTeamAdmin;
    case Access::kAdmin:
      return Role::kAdmin;
    case Access::kOpen:
    case Access::kInstance:
      return std::nullopt;
  }
  return Role::kAdmin;
}

const char* ToString(Access a) {
  switch (a) {
    case Access::kOpen:
      return "open";
    case Access::kInstance:
      return "instance";
    case Access::kViewer:
      return "viewer";
    case Access::kMember:
      return "member";
    case Access::kTeamAdmin:
      return "team-admin";
    case Access::kAdmin:
      return "admin";
  }
  return "admin";
}

Router::Router(http::RouteTable& server, const ApiTokens* tokens, RouterOptions opts)
    : server_(server), tokens_(tokens), opts_(std::move(opts)), limiter_(opts_.limits) {}

TimeMs Router::Now() const {
  return opts_.clock ? opts_.clock->NowMs() : RealClock::Get().NowMs();
}

bool Router::Admit(const RouteRule& rule, const httplib::Request& req, httplib::Response& res, Principal& who) {
  if (req.has_header("Origin")) {
    const std::string origin = req.get_header_value("Origin");
    const auto& ok = opts_.allowed_origins;
    if (std::find(ok.begin(), ok.end(), origin) == ok.end()) {
      SendApiError(res, Status(Code::kPermissionDenied,
                               "cross-origin request from " + origin + " refused (api.allowed_origins)"));
      return false;
    }
  }
  const std::optional<Role> least = LeastRole(rule.access);
  if (!least) return true;
  const std::string token = BearerToken(req);
  const TimeMs now = Now();
  if (!limiter_.MayTry(req.remote_addr, now)) {
    SendApiError(res, Status(Code::kResourceExhausted,
                             "too many failed authentications from " + req.remote_addr + "; retry in a minute"));
    return false;
  }
  if (token.empty()) {
    res.set_header("WWW-Authenticate", "Bearer realm=\"kiln\"");
    SendApiError(res, Status(Code::kUnauthenticated,
                             "this route needs a credential: Authorization: Bearer <token> (kiln login)"));
    return false;
  }
  // A JWT is the identity provider's (auth.oidc); anything else one of kilnd's API tokens.
  auto p = opts_.oidc != nullptr && OidcVerifier::LooksLikeJwt(token) ? opts_.oidc->Authenticate(token)
           : tokens_                                                  ? tokens_->Authenticate(token)
                     : Result<Principal>(Status(Code::kUnauthenticated, "no tokens"));
  if (!p.ok()) {
    if (p.status().code() == Code::kUnauthenticated) limiter_.RecordFailure(req.remote_addr, now);
    res.set_header("WWW-Authenticate", "Bearer realm=\"kiln\", error=\"invalid_token\"");
    SendApiError(res, p.status());
    return false;
  }
  who = std::move(*p);
  if (who.role < *least) {
    SendApiError(res, Status(Code::kPermissionDenied, std::string("this needs the role ") + ToString(rule.access) +
                                                          " or above; " + who.name + " is " + ToString(who.role)));
    return false;
  }
  if (rule.body == Body::kJson && !req.body.empty() && !IsJson(req.get_header_value("Content-Type"))) {
    SendApiError(res, Status(Code::kUnsupportedMediaType, "the body must be JSON (Content-Type: application/json)"));
    return false;
  }
  if (!limiter_.TakeRequest(who.id, now)) {
    SendApiError(res, Status(Code::kResourceExhausted,
                             "rate limit: too many requests from " + who.name + "; slow down (api.rate_limit)"));
    return false;
  }
  return true;
}

void Router::Audit(const httplib::Request& req, const httplib::Response& res, const Principal& who) {
  if (!opts_.audit || req.method == "GET" || req.method == "HEAD") return;
  AuditRecord r;
  r.time = Now();
  r.principal = who.id;
  r.name = who.name;
  r.team = who.team;
  r.method = req.method;
  r.path = req.path.substr(0, 1024);
  r.source = req.remote_addr;
  r.status = res.status;
  auto seq = opts_.audit->AppendAudit(r);
  if (!seq.ok()) fprintf(stderr, "kilnd: audit: %s\n", seq.status().ToString().c_str());
}

void Router::Add(const RouteRule& rule, http::ReadBody read, StreamHandler h) {
  rules_.push_back(rule);
  server_.Handle(rule.method, rule.pattern, read,
                 [this, rule, h = std::move(h)](const httplib::Request& req,
                                                httplib::Response& res) -> std::shared_ptr<http::StreamSource> {
                   Principal who;
                   std::shared_ptr<http::StreamSource> src;
                   if (Admit(rule, req, res, who)) src = h(req, res, who);
                   if (rule.access != Access::kInstance) Audit(req, res, who);
                   return src;
                 });
}

namespace {
Router::StreamHandler Answer(Router::Handler h) {
  return [h = std::move(h)](const httplib::Request& req, httplib::Response& res,
                            const Principal& who) -> std::shared_ptr<http::StreamSource> {
    h(req, res, who);
    return nullptr;
  };
}
}  // namespace

void Router::Get(const std::string& pattern, Access access, Handler h) {
  Add({"GET", pattern, access, Body::kNone}, http::ReadBody::kYes, Answer(std::move(h)));
}

void Router::Post(const std::string& pattern, Access access, Body body, Handler h) {
  Add({"POST", pattern, access, body}, http::ReadBody::kYes, Answer(std::move(h)));
}

void Router::Put(const std::string& pattern, Access access, Body body, Handler h) {
  Add({"PUT", pattern, access, body}, http::ReadBody::kYes, Answer(std::move(h)));
}

void Router::Delete(const std::string& pattern, Access access, Handler h) {
  Add({"DELETE", pattern, access, Body::kNone}, http::ReadBody::kYes, Answer(std::move(h)));
}

void Router::PostWithoutBody(const std::string& pattern, Access access, Handler h) {
  Add({"POST", pattern, access, Body::kNone}, http::ReadBody::kNo, Answer(std::move(h)));
}

void Router::Stream(const std::string& pattern, Access access, StreamHandler h) {
  Add({"GET", pattern, access, Body::kNone}, http::ReadBody::kYes, std::move(h));
}

Result<std::shared_ptr<void>> StreamSlots::Acquire(const std::string& principal) {
  std::lock_guard<std::mutex> l(mu_);
  if (total_ >= max_total_)
    return Status(Code::kResourceExhausted,
                  "kilnd has " + std::to_string(total_) + " streams open, its limit (api.max_streams); retry later");
  int& mine = per_[principal];
  if (mine >= max_per_)
    return Status(Code::kResourceExhausted, "you have " + std::to_string(mine) +
                                                " streams open, the limit per caller (api.max_streams_per_principal)");
  ++mine;
  ++total_;
  return std::shared_ptr<void>(nullptr, [this, principal](void*) { Release(principal); });
}

void StreamSlots::Release(const std::string& principal) {
  std::lock_guard<std::mutex> l(mu_);
  --total_;
  auto it = per_.find(principal);
  if (it != per_.end() && --it->second <= 0) per_.erase(it);
}

int StreamSlots::open() const {
  std::lock_guard<std::mutex> l(mu_);
  return total_;
}

}  // namespace kiln
