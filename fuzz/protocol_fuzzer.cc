// Arbitrary bytes as the files kiln-supervisor and kilnd exchange (launch.json,
// status.json, supervisor.pid, the ready line, the persisted handle). launch.json
// and status.json sit in a directory a job cannot reach, but kilnd reads them
// after any crash or upgrade: a decoder must refuse, never crash, and whatever it
// accepts must encode and decode to the same thing.
#include <cstdlib>

#include "compute/local/protocol.h"

namespace {

void Check(bool ok) {
  if (!ok) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kiln::supervisor;
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (auto l = DecodeLaunchFile(text); l.ok()) {
    auto again = DecodeLaunchFile(Encode(*l));
    Check(again.ok());
    Check(again->argv == l->argv && again->env == l->env && again->uid == l->uid && again->gid == l->gid &&
          again->network == l->network && again->seccomp == l->seccomp && again->pids_max == l->pids_max &&
          again->fd_binds.size() == l->fd_binds.size() && again->link.has_value() == l->link.has_value());
  }
  if (auto s = DecodeStatusFile(text); s.ok()) {
    auto again = DecodeStatusFile(Encode(*s));
    Check(again.ok() && again->exit.exit_code == s->exit.exit_code && again->ended_ms == s->ended_ms);
  }
  if (auto p = DecodePidFile(text); p.ok()) Check(p->pid > 0);
  if (auto h = DecodeHandle(text); h.ok()) {
    auto again = DecodeHandle(Encode(*h));
    Check(again.ok() && again->pid == h->pid && again->dir == h->dir);
  }
  ReadyAnswer a = DecodeReady(text);
  Check(DecodeReady(Encode(a)).kind == a.kind);
  return 0;
}
