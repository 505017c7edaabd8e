// Who may call: /v1/whoami, API tokens (/v1/tokens), SageMaker access keys
// (/v1/keys) and the audit log (/v1/audit). A team admin manages its own team's
// credentials and grants no role above its own; an admin manages every team's.
#include "api/http_helpers.h"
#include "api/native_api.h"
#include "common/json_input.h"

namespace kiln {
namespace {

using api_internal::SendJson;
using nlohmann::json;

json TokenDoc(const ApiTokenRecord& t) {
  return {{"id", t.id},
          {"name", t.name},
          {"team", t.team},
          {"role", t.role},
          {"created_ms", t.created},
          {"expires_ms", t.expires == 0 ? json(nullptr) : json(t.expires)},
          {"revoked_ms", t.revoked == 0 ? json(nullptr) : json(t.revoked)}};
}

// The team and role a new credential asks for, checked against what `who` may
// grant: its own team (any, for an admin), no role above its own.
Result<std::pair<std::string, Role>> Grant(const json& b, const Principal& who, Role default_role) {
  std::string team = who.team;
  if (b.contains("team")) {
    if (!b["team"].is_string() || !IsValidJobName(b["team"]))
      return InvalidArgument("team", "team: 1-63 letters, digits or hyphens");
    team = b["team"];
  }
  Role role = default_role;
  if (b.contains("role")) {
    auto parsed = b["role"].is_string() ? ParseRole(b["role"].get<std::string>()) : std::nullopt;
    if (!parsed || b["role"] == "team") return InvalidArgument("role", "role: admin, team-admin, member or viewer");
    role = *parsed;
  }
  if (!who.May(Role::kTeamAdmin, team))
    return Status(Code::kPermissionDenied, who.name + " does not manage team " + team, "team");
  if (role > who.role)
    return Status(Code::kPermissionDenied, who.name + " may not grant the role " + std::string(ToString(role)), "role");
  return std::make_pair(team, role);
}

Result<json> ParseObject(const std::string& body) {
  auto b = ParseUntrustedJson(body.empty() ? std::string_view("{}") : std::string_view(body));
  if (!b.ok()) return b.status();
  if (!b->is_object()) return InvalidArgument("", "the body must be a JSON object");
  return b;
}

// `?team=` for an admin; a team admin's own team, whatever it asks.
std::string ListedTeam(const httplib::Request& req, const Principal& who) {
  return who.role == Role::kAdmin ? req.get_param_value("team") : who.team;
}

}  // namespace

void NativeApi::RegisterAccounts(Router& r) {
  r.Get("/v1/whoami", Access::kViewer, [](const httplib::Request&, httplib::Response& res, const Principal& who) {
    SendJson(res, 200,
             {{"id", who.id},
              {"name", who.name},
              {"team", who.team},
              {"role", ToString(who.role)},
              {"credential", ToString(who.via)}});
  });

  // API tokens.
  r.Post("/v1/tokens", Access::kTeamAdmin, Body::kJson,
         [this](const httplib::Request& req, httplib::Response& res, const Principal& who) {
           auto b = ParseObject(req.body);
           if (!b.ok()) return SendApiError(res, b.status());
           auto grant = Grant(*b, who, Role::kMember);
           if (!grant.ok()) return SendApiError(res, grant.status());
           const json name = b->value("name", json(""));
           TokenRequest t{name.is_string() ? name.get<std::string>() : "", grant->first, grant->second, 0};
           if (b->contains("ttl_seconds")) {
             if (!(*b)["ttl_seconds"].is_number_integer())
               return SendApiError(res, InvalidArgument("ttl_seconds", "ttl_seconds: an integer"));
             t.ttl_seconds = (*b)["ttl_seconds"].get<int64_t>();
           }
           auto issued = opts_.api_tokens->Create(t);
           if (!issued.ok()) return SendApiError(res, issued.status());
           json doc = TokenDoc(issued->record);
           doc["token"] = issued->token;
           SendJson(res, 201, doc);
         });
  r.Get("/v1/tokens", Access::kTeamAdmin,
        [this](const httplib::Request& req, httplib::Response& res, const Principal& who) {
          auto list = opts_.api_tokens->List(ListedTeam(req, who));
          if (!list.ok()) return SendApiError(res, list.status());
          json arr = json::array();
          for (const auto& t : *list) arr.push_back(TokenDoc(t));
          SendJson(res, 200, {{"tokens", arr}});
        });
  // Revoke: a team admin its team's tokens, an admin any; everyone its own
  // (DELETE /v1/whoami, `kiln logout`).
  r.Delete(R"(/v1/tokens/([A-Z2-7]+))", Access::kTeamAdmin,
           [this](const httplib::Request& req, httplib::Response& res, const Principal& who) {
             const std::string id = req.matches[1];
             auto t = opts_.api_tokens->Get(id);
             if (!t.ok() || !who.May(Role::kTeamAdmin, t->team))
               return SendApiError(res, NotFound("token '" + id + "' not found"));
             if (Status st = opts_.api_tokens->Revoke(id); !st.ok()) return SendApiError(res, st);
             res.status = 204;
           });
  r.Delete("/v1/whoami", Access::kViewer,
           [this](const httplib::Request&, httplib::Response& res, const Principal& who) {
             if (who.via != Credential::kApiToken)
               return SendApiError(res, InvalidArgument("", "only an API token can be revoked this way"));
             if (Status st = opts_.api_tokens->Revoke(who.id); !st.ok()) return SendApiError(res, st);
             res.status = 204;
           });

  // SageMaker access keys.
  if (opts_.access_keys) {
    AccessKeys& keys = *opts_.access_keys;
    r.Post("/v1/keys", Access::kTeamAdmin, Body::kJson,
           [&keys](const httplib::Request& req, httplib::Response& res, const Principal& who) {
             auto b = ParseObject(req.body);
             if (!b.ok()) return SendApiError(res, b.status());
             auto grant = Grant(*b, who, Role::kMember);
             if (!grant.ok()) return SendApiError(res, grant.status());
             auto k = keys.Create(grant->first, grant->second);
             if (!k.ok()) return SendApiError(res, k.status());
             SendJson(res, 201,
                      {{"access_key_id", k->id},
                       {"secret_access_key", k->secret},
                       {"team", k->team},
                       {"role", ToString(k->role)}});
           });
    r.Get("/v1/keys", Access::kTeamAdmin,
          [&keys](const httplib::Request& req, httplib::Response& res, const Principal& who) {
            auto ks = keys.List(ListedTeam(req, who));
            if (!ks.ok()) return SendApiError(res, ks.status());
            json out = json::array();
            for (const auto& k : *ks)
              out.push_back(
                  {{"access_key_id", k.id}, {"team", k.team}, {"role", ToString(k.role)}, {"created_ms", k.created}});
            SendJson(res, 200, {{"keys", out}});
          });
    r.Delete(R"(/v1/keys/([A-Z0-9]+))", Access::kTeamAdmin,
             [&keys](const httplib::Request& req, httplib::Response& res, const Principal& who) {
               const std::string id = req.matches[1];
               auto k = keys.Lookup(id);
               if (!k.ok() || !who.May(Role::kTeamAdmin, k->team))
                 return SendApiError(res, NotFound("access key '" + id + "' not found"));
               if (Status st = keys.Delete(id); !st.ok()) return SendApiError(res, st);
               res.status = 204;
             });
  }

  // The audit log: an admin's of every team (or ?team=), a team admin's of its own.
  r.Get("/v1/audit", Access::kTeamAdmin,
        [this](const httplib::Request& req, httplib::Response& res, const Principal& who) {
          const int64_t after = req.has_param("after") ? atoll(req.get_param_value("after").c_str()) : 0;
          const int limit =
              req.has_param("limit") ? std::clamp(atoi(req.get_param_value("limit").c_str()), 1, 1000) : 100;
          auto rows = store_.ListAudit(after, ListedTeam(req, who), limit);
          if (!rows.ok()) return SendApiError(res, rows.status());
          json arr = json::array();
          for (const auto& a : *rows)
            arr.push_back({{"seq", a.seq},
                           {"time_ms", a.time},
                           {"principal", a.principal},
                           {"name", a.name},
                           {"team", a.team},
                           {"method", a.method},
                           {"path", a.path},
                           {"source", a.source},
                           {"status", a.status}});
          SendJson(res, 200, {{"records", arr}, {"next_after", rows->empty() ? json(after) : json(rows->back().seq)}});
        });
}

}  // namespace kiln
