#pragma once
// Who is calling: one model for both APIs. A principal is an API token (native
// API) or an access key (SageMaker API), each of one team with one role. Roles
// are ordered: each may do what the one before it may.
#include <optional>
#include <string>
#include <string_view>

namespace kiln {

enum class Role {
  kViewer,     // reads its team's jobs, tuning jobs, logs, metrics, events, secret names
  kMember,     // and submits and stops its team's jobs and tuning jobs
  kTeamAdmin,  // and manages its team's secrets, tokens and access keys
  kAdmin,      // everything, every team
};
const char* ToString(Role r);
// "admin", "team-admin", "member", "viewer"; "team" (access keys made before
// roles) reads as member. nullopt for anything else.
std::optional<Role> ParseRole(std::string_view s);

enum class Credential { kApiToken, kAccessKey, kOidcToken };
const char* ToString(Credential c);  // "api-token", "access-key", "oidc"

struct Principal {
  std::string id;    // token id or access key id
  std::string name;  // the user or service account
  std::string team;
  Role role = Role::kViewer;
  Credential via = Credential::kApiToken;

  // Whether this principal may see `team`'s resources at all (admins: every team).
  bool Sees(const std::string& resource_team) const { return role == Role::kAdmin || resource_team == team; }
  // Whether it may do what needs `need` on `team`'s resources.
  bool May(Role need, const std::string& resource_team) const { return role >= need && Sees(resource_team); }
};

}  // namespace kiln
