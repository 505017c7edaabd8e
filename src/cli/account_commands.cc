// kiln secrets set|list|delete, kiln keys create|list|delete, kiln login|logout|
// whoami, kiln tokens create|list|revoke, kiln audit.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/clock.h"
#include "common/fsutil.h"

namespace kiln::cli {

using nlohmann::json;

int SetSecret(Context& ctx, const SecretOptions& o) {
  std::string value;
  if (!o.from_file.empty()) {
    auto v = ReadFile(o.from_file);
    if (!v.ok()) {
      fprintf(stderr, "kiln: %s\n", v.status().ToString().c_str());
      return 2;
    }
    value = *v;
  } else {
    if (isatty(0)) fprintf(stderr, "value (end with Ctrl-D): ");
    value.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    if (isatty(0)) fprintf(stderr, "\n");
  }
  if (!value.empty() && value.back() == '\n' && o.from_file.empty()) value.pop_back();  // echo adds one
  auto r = ctx.kilnd.Call("PUT", "/v1/secrets/" + UrlEscape(o.team) + "/" + UrlEscape(o.name), value);
  if (!r) return 2;
  std::cout << "stored " << o.team << "/" << o.name << "\n";
  return 0;
}

int ListSecrets(Context& ctx, const std::string& team) {
  auto r = ctx.kilnd.Call("GET", "/v1/secrets/" + UrlEscape(team));
  if (!r) return 2;
  if (ctx.output == Output::kJson)
    std::cout << r->dump(2) << "\n";
  else
    for (const auto& s : (*r)["secrets"])
      std::cout << Pad(s.value("name", ""), 40) << s.value("updated_at", "") << "\n";
  return 0;
}

int DeleteSecret(Context& ctx, const SecretOptions& o) {
  if (!ctx.kilnd.Call("DELETE", "/v1/secrets/" + UrlEscape(o.team) + "/" + UrlEscape(o.name))) return 2;
  std::cout << "deleted " << o.team << "/" << o.name << "\n";
  return 0;
}

int CreateKey(Context& ctx, const CreateKeyOptions& o) {
  json body = {{"team", o.team}, {"role", o.admin ? "admin" : o.role}};
  auto r = ctx.kilnd.Call("POST", "/v1/keys", body.dump());
  if (!r) return 2;
  if (ctx.output == Output::kJson) {
    std::cout << r->dump(2) << "\n";
  } else {
    std::cout << "[" << o.team << "]\naws_access_key_id = " << (*r)["access_key_id"].get<std::string>()
              << "\naws_secret_access_key = " << (*r)["secret_access_key"].get<std::string>() << "\n";
    std::cerr << "kiln: the secret is shown only now; it is stored encrypted\n";
  }
  return 0;
}

int ListKeys(Context& ctx, const std::string& team) {
  auto r = ctx.kilnd.Call("GET", "/v1/keys" + (team.empty() ? std::string() : "?team=" + UrlEscape(team)));
  if (!r) return 2;
  if (ctx.output == Output::kJson)
    std::cout << r->dump(2) << "\n";
  else
    for (const auto& k : (*r)["keys"])
      std::cout << Pad(k.value("access_key_id", ""), 24) << Pad(k.value("team", ""), 24) << k.value("role", "") << "\n";
  return 0;
}

int DeleteKey(Context& ctx, const std::string& key_id) {
  if (!ctx.kilnd.Call("DELETE", "/v1/keys/" + UrlEscape(key_id))) return 2;
  std::cout << "deleted " << key_id << "\n";
  return 0;
}

namespace {

std::string Trimmed(std::string s) {
  while (!s.empty() && isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  while (!s.empty() && isspace(static_cast<unsigned char>(s.front()))) s.erase(0, 1);
  return s;
}

std::string Millis(const json& v) {
  return v.is_number() ? FormatTime(v.get<int64_t>()) : "-";
}

}  // namespace

int Login(Context& ctx, const LoginOptions& o) {
  std::string token = o.token;
  if (token.empty()) {
    if (isatty(0)) fprintf(stderr, "token: ");
    std::getline(std::cin, token);
  }
  token = Trimmed(token);
  ctx.kilnd.SetToken(token);
  auto me = ctx.kilnd.Call("GET", "/v1/whoami");
  if (!me) return 2;
  const std::string file = TokenFile();
  const std::string dir = file.substr(0, file.rfind('/'));
  if (Status st = MakeDirs(dir); !st.ok() || chmod(dir.c_str(), 0700) != 0) {
    fprintf(stderr, "kiln: cannot create %s\n", dir.c_str());
    return 2;
  }
  if (Status st = WriteFileAtomic(file, token + "\n", 0600); !st.ok()) {
    fprintf(stderr, "kiln: %s\n", st.ToString().c_str());
    return 2;
  }
  std::cout << "logged in as " << me->value("name", "") << " (team " << me->value("team", "") << ", "
            << me->value("role", "") << "); the token is in " << file << "\n";
  return 0;
}

int Logout(Context& ctx, bool revoke) {
  if (revoke && !ctx.kilnd.Call("DELETE", "/v1/whoami")) return 2;
  unlink(TokenFile().c_str());
  std::cout << (revoke ? "revoked the token and logged out\n" : "logged out\n");
  return 0;
}

int WhoAmI(Context& ctx) {
  auto me = ctx.kilnd.Call("GET", "/v1/whoami");
  if (!me) return 2;
  if (ctx.output == Output::kJson)
    std::cout << me->dump(2) << "\n";
  else
    std::cout << me->value("name", "") << "  team " << me->value("team", "") << "  role " << me->value("role", "")
              << "  token " << me->value("id", "") << "\n";
  return 0;
}

int CreateToken(Context& ctx, const CreateTokenOptions& o) {
  json body = {{"name", o.name}, {"role", o.role}, {"ttl_seconds", o.ttl_seconds}};
  if (!o.team.empty()) body["team"] = o.team;
  auto r = ctx.kilnd.Call("POST", "/v1/tokens", body.dump());
  if (!r) return 2;
  if (ctx.output == Output::kJson) {
    std::cout << r->dump(2) << "\n";
  } else {
    std::cout << (*r)["token"].get<std::string>() << "\n";
    std::cerr << "kiln: token " << (*r)["id"].get<std::string>() << " for " << o.name << " (team "
              << (*r)["team"].get<std::string>() << ", " << (*r)["role"].get<std::string>()
              << "); shown only now, only its hash is stored. Use it with `kiln login`.\n";
  }
  return 0;
}

int ListTokens(Context& ctx, const std::string& team) {
  auto r = ctx.kilnd.Call("GET", "/v1/tokens" + (team.empty() ? std::string() : "?team=" + UrlEscape(team)));
  if (!r) return 2;
  if (ctx.output == Output::kJson) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  for (const auto& t : (*r)["tokens"])
    std::cout << Pad(t.value("id", ""), 18) << Pad(t.value("name", ""), 24) << Pad(t.value("team", ""), 16)
              << Pad(t.value("role", ""), 11) << (t["revoked_ms"].is_null() ? "active" : "revoked") << "\n";
  return 0;
}

int ListPools(Context& ctx) {
  auto r = ctx.kilnd.Call("GET", "/v1/pools");
  if (!r) return 2;
  if (ctx.output == Output::kJson) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  std::cout << Pad("NAME", 16) << Pad("BACKEND", 8) << Pad("HEALTH", 10) << Pad("QUEUED", 7) << Pad("RUNNING", 8)
            << "INSTANCE TYPES\n";
  for (const auto& p : (*r)["pools"]) {
    std::string types;
    for (const auto& t : p["instance_types"]) types += (types.empty() ? "" : ",") + t.get<std::string>();
    if (p.value("default", false)) types = types.empty() ? "(all others)" : types;
    std::cout << Pad(p.value("name", ""), 16) << Pad(p.value("backend", ""), 8) << Pad(p.value("health", ""), 10)
              << Pad(std::to_string(p.value("queued", 0)), 7) << Pad(std::to_string(p.value("running", 0)), 8) << types
              << "\n";
    if (!p.value("message", "").empty()) std::cout << "  " << p.value("message", "") << "\n";
  }
  return 0;
}

int ListWarmPools(Context& ctx, const std::string& status) {
  auto r = ctx.kilnd.Call("GET", "/v1/jobs?limit=1000&warm_pool_status=" + UrlEscape(status));
  if (!r) return 2;
  if (ctx.output == Output::kJson) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  std::cout << Pad("JOB", 34) << Pad("TEAM", 12) << Pad("INSTANCE", 18) << "WARM POOL\n";
  for (const auto& j : (*r)["jobs"]) {
    const auto& spec = j["spec"];
    std::cout << Pad(j.value("name", ""), 34) << Pad(spec.value("team", ""), 12)
              << Pad(spec["instance"].value("type", "") + " x" + spec["instance"]["count"].dump(), 18)
              << WarmPoolLine(j["warm_pool"]) << "\n";
  }
  if (!(*r)["next_page_token"].is_null()) std::cout << "(more than 1000; narrow with --output json and a query)\n";
  return 0;
}

int UpdateKeepAlive(Context& ctx, const std::string& job, int64_t seconds) {
  auto r = ctx.kilnd.Call("PUT", "/v1/jobs/" + UrlEscape(job) + "/keep-alive",
                          nlohmann::json{{"keep_alive_seconds", seconds}}.dump());
  if (!r) return 2;
  if (ctx.output == Output::kJson) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  std::cout << r->value("name", "") << ": "
            << (r->contains("warm_pool") ? WarmPoolLine((*r)["warm_pool"]) : std::string("no warm pool")) << "\n";
  return 0;
}

int RevokeToken(Context& ctx, const std::string& id) {
  if (!ctx.kilnd.Call("DELETE", "/v1/tokens/" + UrlEscape(id))) return 2;
  std::cout << "revoked " << id << "\n";
  return 0;
}

int PrintAudit(Context& ctx, const AuditOptions& o) {
  std::string q = "/v1/audit?after=" + std::to_string(o.after) + "&limit=" + std::to_string(o.limit);
  if (!o.team.empty()) q += "&team=" + UrlEscape(o.team);
  auto r = ctx.kilnd.Call("GET", q);
  if (!r) return 2;
  if (ctx.output == Output::kJson) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  for (const auto& a : (*r)["records"])
    std::cout << Pad(std::to_string(a.value("seq", 0)), 6) << Pad(Millis(a["time_ms"]), 20)
              << Pad(a.value("name", ""), 20) << Pad(a.value("team", ""), 12) << Pad(a.value("source", ""), 15)
              << a.value("method", "") << " " << a.value("path", "") << " -> " << a.value("status", 0) << "\n";
  return 0;
}

}  // namespace kiln::cli
