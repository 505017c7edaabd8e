// LocalBackend's warm sandboxes: pre-started sandboxes a job takes at launch.
// See README.md ("Warm sandboxes") and PROTOCOL.md.
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "common/fsutil.h"
#include "common/sandbox_paths.h"
#include "compute/local/cgroup.h"
#include "compute/local/local_backend.h"
#include "compute/local/scratch.h"
#include "compute/local/supervisor.h"

namespace kiln {

namespace fs = std::filesystem;

namespace {

// A retired slot's grace period: its entrypoint only waits for a job.
constexpr int64_t kSlotGraceMs = 2000;
// A slot answers once its runtime's imports are done (the supervisor waits 120 s).
constexpr int kSlotStartMs = 125000;
// After a slot failed to start, the refill waits this long before the next try.
constexpr int kRefillBackoffMs = 5000;

// Adds `fd` to the refill thread's epoll set (readable: a slot ended, or a wake-up).
void AddToEpoll(int epfd, int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

void Wake(int fd) {
  if (fd < 0) return;
  uint64_t one = 1;
  ssize_t n = write(fd, &one, sizeof(one));
  (void)n;
}

}  // namespace

void LocalBackend::WakeRefill() const {
  Wake(warm_wake_);
}

std::vector<int> LocalBackend::IdleWarmSandboxes() const {
  std::lock_guard<std::mutex> l(warm_mu_);
  std::vector<int> out;
  for (const auto& q : idle_) out.push_back(static_cast<int>(q.size()));
  return out;
}

LaunchRequest LocalBackend::SlotRequest(const WarmSandboxOptions& p, const std::string& id) const {
  LaunchRequest r;
  r.instance_id = id;
  r.job_id = id;
  r.type = p.type;
  r.image = p.image_env;
  r.spec.team = p.team;
  r.spec.instance_count = 1;
  return r;
}

bool LocalBackend::SlotMatches(const WarmSandboxOptions& p, const LaunchRequest& req) const {
  if (req.spec.instance_count != 1 || req.index != 0 || req.type.name != p.type.name) return false;
  if (!p.team.empty() && p.team != req.spec.team) return false;
  if (EgressFor(req)) return false;
  if (p.image.empty()) return req.image.kind != ImageKind::kRootfs && req.image.prefix.empty();
  return req.image.uri == p.image;
}

void LocalBackend::InitWarmSandboxes() {
  idle_.resize(opts_.warm_sandboxes.size());
  warm_epfd_ = epoll_create1(EPOLL_CLOEXEC);
  warm_wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  AddToEpoll(warm_epfd_, warm_wake_);
  // Slots a previous kilnd left idle are retired (their configuration may have
  // changed); those already gone are removed.
  std::error_code ec;
  std::vector<std::string> leftovers;
  for (const auto& e : fs::directory_iterator(opts_.instances_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(kSlotPrefix, 0) == 0) leftovers.push_back(name);
  }
  for (const auto& id : leftovers) {
    auto sup = SupervisorOf(Dir(id));
    int fd = sup.ok() && ProcessStartTime(sup->first) == sup->second
                 ? static_cast<int>(syscall(SYS_pidfd_open, sup->first, 0))
                 : -1;
    if (fd < 0) {
      RemoveSlot(id);
      continue;
    }
    {
      std::lock_guard<std::mutex> l(warm_mu_);
      retiring_[fd] = id;
    }
    AddToEpoll(warm_epfd_, fd);
    kill(sup->first, SIGTERM);
  }
  refill_ = std::thread([this] { RefillLoop(); });
}

void LocalBackend::StopWarmSandboxes() {
  if (!refill_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(warm_mu_);
    warm_stop_ = true;
  }
  Wake(warm_wake_);
  refill_.join();
  // Idle slots end with kilnd (a restarted one starts its own).
  std::lock_guard<std::mutex> l(warm_mu_);
  for (auto& q : idle_) {
    for (auto& slot : q) {
      if (ProcessStartTime(slot.pid) == slot.start) kill(slot.pid, SIGTERM);
      close(slot.pidfd);
    }
    q.clear();
  }
  for (auto& p : prewarms_) {
    if (!p.slot) continue;
    if (ProcessStartTime(p.slot->pid) == p.slot->start) kill(p.slot->pid, SIGTERM);
    close(p.slot->pidfd);
  }
  prewarms_.clear();
  for (auto& [fd, id] : retiring_) close(fd);
  retiring_.clear();
  close(warm_epfd_);
  close(warm_wake_);
  warm_epfd_ = warm_wake_ = -1;
}

Result<LocalBackend::WarmSlot> LocalBackend::StartSlot(const WarmSandboxOptions& p) {
  const std::string id = StrCat(kSlotPrefix, std::to_string(getpid()), "-", std::to_string(++slot_seq_));
  const std::string dir = Dir(id);
  LaunchRequest req = SlotRequest(p, id);
  {
    std::lock_guard<std::mutex> launch_lock(launch_mu_);
    KILN_RETURN_IF_ERROR(Admit(req));
  }
  auto fail = [&](const Status& st) {
    Release(id, id);
    RemoveSlot(id);
    return st;
  };
  if (Status st = PrepareInstanceDir(req, dir); !st.ok()) return fail(st);
  if (Status st = WriteFileAtomic(
          dir + "/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\talgo-1\n", 0644,
          Sync::kNoSync);
      !st.ok())
    return fail(st);
  auto launch = LaunchFileFor(req, dir);
  if (!launch.ok()) return fail(launch.status());
  SandboxCommand command = SandboxArgv(req, dir, SandboxPart::kWarmSandbox);
  launch->argv = std::move(command.argv);
  launch->fd_binds = std::move(command.fd_binds);
  launch->seed.clear();
  launch->publish.clear();
  launch->env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp", "LANG=C.UTF-8"};
  if (!p.runtime.empty()) {
    launch->env.push_back("KILN_WARM_RUNTIME=" + p.runtime);
    std::string preload;
    for (const auto& m : p.preload) preload += (preload.empty() ? "" : ",") + m;
    launch->env.push_back("KILN_WARM_PRELOAD=" + preload);
  }
  launch->grace_ms = kSlotGraceMs;
  launch->report_url.clear();
  launch->report_token.clear();
  launch->warm = true;
  if (Status st =
          WriteFileAtomic(dir + "/" + supervisor::kLaunchFile, supervisor::Encode(*launch), 0600, Sync::kNoSync);
      !st.ok())
    return fail(st);
  auto pid = StartSupervisor(dir, id, kSlotStartMs);
  if (!pid.ok()) return fail(pid.status());
  WarmSlot slot{
      id, 0, *pid, ProcessStartTime(*pid), static_cast<int>(syscall(SYS_pidfd_open, *pid, 0)), clock_.NowMs()};
  if (slot.pidfd < 0) {
    kill(slot.pid, SIGKILL);
    waitpid(slot.pid, nullptr, 0);
    return fail(Internal(std::string("pidfd_open: ") + strerror(errno)));
  }
  return slot;
}

std::optional<LocalBackend::WarmSlot> LocalBackend::TakeSlot(const LaunchRequest& req) {
  std::lock_guard<std::mutex> l(warm_mu_);
  for (size_t i = 0; i < idle_.size(); ++i) {
    if (idle_[i].empty() || !SlotMatches(opts_.warm_sandboxes[i], req)) continue;
    WarmSlot slot = idle_[i].front();
    idle_[i].pop_front();
    epoll_ctl(warm_epfd_, EPOLL_CTL_DEL, slot.pidfd, nullptr);
    close(slot.pidfd);
    slot.pidfd = -1;
    return slot;
  }
  for (auto it = prewarms_.begin(); it != prewarms_.end(); ++it) {
    if (!it->slot || !SlotMatches(it->options, req)) continue;
    WarmSlot slot = *it->slot;
    prewarms_.erase(it);
    epoll_ctl(warm_epfd_, EPOLL_CTL_DEL, slot.pidfd, nullptr);
    close(slot.pidfd);
    slot.pidfd = -1;
    return slot;
  }
  return std::nullopt;
}

Status LocalBackend::Prewarm(const LaunchRequest& like, TimeMs until_ms, const std::vector<std::string>& preload) {
  if (warm_epfd_ < 0 || like.spec.instance_count != 1 || EgressFor(like)) return Status::Ok();
  for (const auto& p : opts_.warm_sandboxes)
    if (p.count > 0 && SlotMatches(p, like)) return Status::Ok();  // kept warm anyway
  WarmSandboxOptions o;
  o.type = like.type;
  o.image = like.image.uri;
  o.image_env = like.image;
  o.team = like.spec.team;
  o.max_idle_seconds = 0;
  // The runtime: the job's interpreter, found on the sandbox's PATH in the host's root.
  const auto& cmd = like.spec.command;
  if (like.image.kind == ImageKind::kHost && like.image.prefix.empty() && cmd.size() >= 2 &&
      fs::path(cmd[0]).filename().string().rfind("python", 0) == 0) {
    for (const char* dir : {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}) {
      const std::string candidate = cmd[0].find('/') != std::string::npos ? cmd[0] : StrCat(dir, "/", cmd[0]);
      if (access(candidate.c_str(), X_OK) == 0) {
        o.runtime = candidate;
        break;
      }
    }
    o.preload = preload;
  }
  {
    std::lock_guard<std::mutex> l(warm_mu_);
    bool joined = false;  // the same sandbox asked for again: held longer
    for (auto& p : prewarms_) {
      if (p.options.type.name == o.type.name && p.options.image == o.image && p.options.team == o.team &&
          p.options.runtime == o.runtime && p.options.preload == o.preload) {
        p.until_ms = std::max(p.until_ms, until_ms);
        joined = true;
        break;
      }
    }
    if (!joined) prewarms_.push_back(Prewarmed{++prewarm_seq_, std::move(o), until_ms, std::nullopt, false});
  }
  WakeRefill();
  return Status::Ok();
}

bool LocalBackend::StartPrewarmed() {
  for (;;) {
    uint64_t id = 0;
    WarmSandboxOptions o;
    {
      std::lock_guard<std::mutex> l(warm_mu_);
      if (warm_stop_) return true;
      const TimeMs now = clock_.NowMs();
      for (auto& p : prewarms_) {
        if (p.slot || p.starting || p.until_ms <= now) continue;
        p.starting = true;
        id = p.id;
        o = p.options;
        break;
      }
    }
    if (id == 0) return true;
    auto slot = StartSlot(o);
    std::lock_guard<std::mutex> l(warm_mu_);
    auto it = std::find_if(prewarms_.begin(), prewarms_.end(), [&](const Prewarmed& p) { return p.id == id; });
    if (!slot.ok()) {
      if (it != prewarms_.end()) it->starting = false;
      if (slot.status().code() == Code::kResourceExhausted) return true;  // no room now: a job's end wakes us
      fprintf(stderr, "kilnd: local backend: pre-warmed sandbox for %s: %s\n", o.type.name.c_str(),
              slot.status().ToString().c_str());
      return false;
    }
    AddToEpoll(warm_epfd_, slot->pidfd);
    if (it == prewarms_.end()) {  // cannot happen (only the refill thread erases); keep it findable anyway
      retiring_[slot->pidfd] = slot->id;
      kill(slot->pid, SIGTERM);
      continue;
    }
    it->starting = false;
    it->slot = *slot;
  }
}

Result<std::string> LocalBackend::AssignSlot(const LaunchRequest& req, const WarmSlot& slot) {
  const std::string from = Dir(slot.id), dir = Dir(req.instance_id);
  // Gone while idle (its pidfd has not been read yet): not a candidate.
  if (ProcessStartTime(slot.pid) != slot.start) {
    waitpid(slot.pid, nullptr, WNOHANG);
    RemoveSlot(slot.id);
    return Status(Code::kUnavailable, "the warm sandbox had ended");
  }
  // On any failure from here the slot is killed and its files go.
  auto fail = [&](const Status& st, const std::string& at) {
    kill(slot.pid, SIGKILL);
    while (waitpid(slot.pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    InstanceCgroup::RemoveLeftover(slot.id);
    RemoveSlot(at == from ? slot.id : req.instance_id);
    if (!opts_.scratch_pool.empty()) scratch::Remove(opts_.scratch_pool, req.instance_id);
    return st;
  };
  // The slot's volume and directory become the instance's (the supervisor holds
  // them open; its sandbox has them mounted).
  if (!opts_.scratch_pool.empty() &&
      rename(ScratchDir(slot.id).c_str(), (opts_.scratch_pool + "/" + req.instance_id).c_str()) != 0)
    return fail(Internal(std::string("rename the warm sandbox's volume: ") + strerror(errno)), from);
  if (rename(from.c_str(), dir.c_str()) != 0) {
    if (!opts_.scratch_pool.empty())
      rename((opts_.scratch_pool + "/" + req.instance_id).c_str(), ScratchDir(slot.id).c_str());
    return fail(Internal(std::string("rename the warm sandbox's directory: ") + strerror(errno)), from);
  }
  if (Status st = PrepareJobDirs(req, dir); !st.ok()) return fail(st, dir);
  supervisor::AssignFile a;
  a.instance_id = req.instance_id;
  a.dir = dir;
  if (!opts_.scratch_pool.empty()) {
    a.scratch = ScratchDir(req.instance_id);
    a.volume_bytes = VolumeBytes(req);
  }
  for (const auto& p : req.image.prefix) a.command.push_back(p);
  for (const auto& c : req.spec.command) a.command.push_back(c);
  a.env = JobEnv(req);
  SandboxCommand binds = SandboxArgv(req, dir, SandboxPart::kJobBinds);
  a.binds = std::move(binds.late);
  a.seed = std::move(binds.seed);
  a.publish = std::move(binds.publish);
  a.grace_ms = req.spec.stop_grace_seconds * 1000;
  if (!req.exit_report_token.empty()) {
    a.report_url = req.api_url;
    a.report_token = req.exit_report_token;
  }
  if (Status st = WriteFileAtomic(dir + "/" + supervisor::kAssignFile, supervisor::Encode(a), 0600, Sync::kNoSync);
      !st.ok())
    return fail(st, dir);
  if (kill(slot.pid, SIGUSR1) != 0)
    return fail(Internal(std::string("signal the warm sandbox: ") + strerror(errno)), dir);
  KILN_RETURN_IF_ERROR(WatchPid(req.instance_id, req.job_id, slot.pid, slot.start));
  WakeRefill();
  return Handle(slot.pid, slot.start, dir, req.job_id);
}

void LocalBackend::RetireSlot(const WarmSlot& slot) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, slot.pid, 0));
  if (fd < 0 || ProcessStartTime(slot.pid) != slot.start) {
    if (fd >= 0) close(fd);
    waitpid(slot.pid, nullptr, WNOHANG);
    RemoveSlot(slot.id);
    return;
  }
  {
    std::lock_guard<std::mutex> l(warm_mu_);
    retiring_[fd] = slot.id;
  }
  AddToEpoll(warm_epfd_, fd);
  kill(slot.pid, SIGTERM);
}

int LocalBackend::RetireStaleSlots() {
  std::vector<WarmSlot> stale;
  int64_t next = -1;
  {
    std::lock_guard<std::mutex> l(warm_mu_);
    const TimeMs now = clock_.NowMs();
    for (size_t i = 0; i < idle_.size(); ++i) {
      const int64_t max_ms = opts_.warm_sandboxes[i].max_idle_seconds * 1000;
      if (max_ms <= 0) continue;
      for (auto it = idle_[i].begin(); it != idle_[i].end();) {
        const int64_t due = it->ready_ms + max_ms - now;
        if (due > 0) {
          next = next < 0 ? due : std::min(next, due);
          ++it;
          continue;
        }
        epoll_ctl(warm_epfd_, EPOLL_CTL_DEL, it->pidfd, nullptr);
        close(it->pidfd);
        stale.push_back(*it);
        it = idle_[i].erase(it);
      }
    }
    for (auto it = prewarms_.begin(); it != prewarms_.end();) {
      const int64_t due = it->until_ms - now;
      if (due > 0 || it->starting) {
        if (due > 0) next = next < 0 ? due : std::min(next, due);
        ++it;
        continue;
      }
      if (it->slot) {
        epoll_ctl(warm_epfd_, EPOLL_CTL_DEL, it->slot->pidfd, nullptr);
        close(it->slot->pidfd);
        stale.push_back(*it->slot);
      }
      it = prewarms_.erase(it);
    }
  }
  for (const auto& slot : stale) RetireSlot(slot);  // its share is released when it has ended
  if (!stale.empty()) return 0;
  return next < 0 ? -1 : static_cast<int>(std::min<int64_t>(next, 1 << 30));
}

void LocalBackend::RemoveSlot(const std::string& id) {
  if (!opts_.scratch_pool.empty()) scratch::Remove(opts_.scratch_pool, id);
  Status st = RemoveTreeNoFollow(Dir(id));
  if (!st.ok()) fprintf(stderr, "kilnd: local backend: remove %s: %s\n", id.c_str(), st.ToString().c_str());
}

void LocalBackend::RefillLoop() {
  int wait_ms = 0;
  for (;;) {
    {
      std::lock_guard<std::mutex> l(warm_mu_);
      if (warm_stop_) return;
    }
    bool failed = false;
    for (size_t i = 0; i < opts_.warm_sandboxes.size(); ++i) {
      for (;;) {
        {
          std::lock_guard<std::mutex> l(warm_mu_);
          if (warm_stop_) return;
          if (static_cast<int>(idle_[i].size()) >= opts_.warm_sandboxes[i].count) break;
        }
        auto slot = StartSlot(opts_.warm_sandboxes[i]);
        if (!slot.ok()) {
          // No room now (a job's end wakes us), or a real failure (retried later).
          if (slot.status().code() != Code::kResourceExhausted) {
            fprintf(stderr, "kilnd: local backend: warm sandbox for %s: %s\n",
                    opts_.warm_sandboxes[i].type.name.c_str(), slot.status().ToString().c_str());
            failed = true;
          }
          break;
        }
        std::lock_guard<std::mutex> l(warm_mu_);
        idle_[i].push_back(*slot);
        AddToEpoll(warm_epfd_, slot->pidfd);
      }
    }
    if (!StartPrewarmed()) failed = true;
    wait_ms = failed ? kRefillBackoffMs : -1;
    if (const int stale = RetireStaleSlots(); stale >= 0) wait_ms = wait_ms < 0 ? stale : std::min(wait_ms, stale);
    if (wait_ms == 0) continue;  // retired some: start their replacements
    epoll_event evs[16];
    int n = epoll_wait(warm_epfd_, evs, 16, wait_ms);
    for (int k = 0; k < n; ++k) {
      const int fd = evs[k].data.fd;
      if (fd == warm_wake_) {
        uint64_t v;
        ssize_t r = read(warm_wake_, &v, sizeof(v));
        (void)r;
        continue;
      }
      // A slot ended: idle (its preload failed, or it was killed) or retired.
      std::string id;
      int pid = 0;
      {
        std::lock_guard<std::mutex> l(warm_mu_);
        if (auto it = retiring_.find(fd); it != retiring_.end()) {
          id = it->second;
          retiring_.erase(it);
        }
        for (auto& p : prewarms_)
          if (id.empty() && p.slot && p.slot->pidfd == fd) {
            id = p.slot->id;
            pid = p.slot->pid;
            p.slot.reset();  // started again if it is still wanted
          }
        for (auto& q : idle_)
          for (auto it = q.begin(); id.empty() && it != q.end(); ++it)
            if (it->pidfd == fd) {
              id = it->id;
              pid = it->pid;
              q.erase(it);
              break;
            }
        epoll_ctl(warm_epfd_, EPOLL_CTL_DEL, fd, nullptr);
      }
      close(fd);
      if (id.empty()) continue;
      if (pid > 0) waitpid(pid, nullptr, WNOHANG);
      fprintf(stderr, "kilnd: local backend: warm sandbox %s ended before a job took it (see %s/%s)\n", id.c_str(),
              Dir(id).c_str(), supervisor::kSupervisorLog);
      Release(id, id);
      InstanceCgroup::RemoveLeftover(id);
      RemoveSlot(id);
    }
  }
}

}  // namespace kiln
