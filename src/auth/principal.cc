#include "auth/principal.h"

namespace kiln {

const char* ToString(Role r) {
  switch (r) {
    case Role::kViewer:
      return "viewer";
    case Role::kMember:
      return "member";
    case Role::kTeamAdmin:
      return "team-admin";
    case Role::kAdmin:
      return "admin";
  }
  return "viewer";
}

std::optional<Role> ParseRole(std::string_view s) {
  if (s == "viewer") return Role::kViewer;
  if (s == "member" || s == "team") return Role::kMember;
  if (s == "team-admin") return Role::kTeamAdmin;
  if (s == "admin") return Role::kAdmin;
  return std::nullopt;
}

const char* ToString(Credential c) {
  switch (c) {
    case Credential::kApiToken:
      return "api-token";
    case Credential::kAccessKey:
      return "access-key";
    case Credential::kOidcToken:
      return "oidc";
  }
  return "api-token";
}

}  // namespace kiln
