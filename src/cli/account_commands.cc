// kiln secrets set|list|delete, kiln keys create|list|delete.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
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
  json body = {{"team", o.team}, {"role", o.admin ? "admin" : "team"}};
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

}  // namespace kiln::cli
