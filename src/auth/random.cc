#include "auth/random.h"

#include <openssl/rand.h>

#include <cstdlib>

namespace kiln {

std::string RandomChars(const std::string& alphabet, size_t n) {
  std::string out;
  unsigned char buf[64];
  const size_t size = alphabet.size();
  while (out.size() < n) {
    if (RAND_bytes(buf, sizeof buf) != 1) abort();  // no entropy: never hand out a guessable credential
    for (unsigned char b : buf) {
      if (b >= 256 - 256 % size) continue;  // keeps the distribution uniform
      out.push_back(alphabet[b % size]);
      if (out.size() == n) break;
    }
  }
  return out;
}

}  // namespace kiln
