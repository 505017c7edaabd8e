#pragma once
// API access keys in AWS's format (AKIA... / 40-character secret), of one team
// with one role (auth/principal.h): the SageMaker API's principals.
// The secret is stored sealed by the SecretBox with the key id as associated data,
// because SigV4 verification needs the secret itself, not a hash of it.
#include <string>
#include <vector>

#include "auth/principal.h"
#include "common/clock.h"
#include "common/status.h"
#include "secrets/secret_box.h"
#include "store/store.h"

namespace kiln {

struct AccessKey {
  std::string id;
  std::string secret;  // empty when listed
  std::string team;
  Role role = Role::kMember;
  TimeMs created = 0;
};

class AccessKeys {
 public:
  AccessKeys(Store& store, const SecretBox& box, Clock& clock) : store_(store), box_(box), clock_(clock) {}
  // A new key pair; the secret is returned once.
  Result<AccessKey> Create(const std::string& team, Role role);
  // The key with its secret; kNotFound if unknown.
  Result<AccessKey> Lookup(const std::string& id) const;
  Result<std::vector<AccessKey>> List(const std::string& team) const;
  Status Delete(const std::string& id);

 private:
  Store& store_;
  const SecretBox& box_;
  Clock& clock_;
};

// An AWS shared-credentials file ([default] profile) holding `key`.
std::string CredentialsFile(const AccessKey& key);
// The principal an access key stands for.
Principal PrincipalOf(const AccessKey& key);

}  // namespace kiln
