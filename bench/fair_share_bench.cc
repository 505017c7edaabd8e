// The fair-share decision over a large queue (issue 13's target: <= 1 ms over
// 10,000 queued jobs of 100 teams), for bench/fair_share_bench.py.
//
//   kiln_fair_share_bench [decisions]
//
// Queues 10,000 waiters of 100 teams (random priorities, ages and sizes; a
// quota on every other team, half of them full), then times `decisions` turns:
// each is PopNext (the decision) followed by charging the winner and queueing a
// new waiter, so the queue stays at 10,000. Prints JSON.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "controller/fair_share.h"

namespace {

double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5))];
}

}  // namespace

int main(int argc, char** argv) {
  using kiln::Usage;
  using kiln::Waiter;
  const int decisions = argc > 1 ? std::max(100, atoi(argv[1])) : 10000;
  constexpr int kTeams = 100, kQueued = 10000;
  std::mt19937_64 rng(42);
  kiln::QuotaConfig cfg;
  for (int t = 0; t < kTeams; t += 2) {
    auto& q = cfg.teams["team" + std::to_string(t)];
    q.vcpus = t % 4 == 0 ? 64 : 1e6;  // every fourth team has room for a few launches only
    q.weight = 1 + t % 3;
  }
  kiln::FairShare fs(cfg);
  int next_id = 0;
  auto make = [&](int team) {
    Usage u;
    u.instances = 1;
    u.vcpus = static_cast<double>(1 << (rng() % 4));
    u.memory_mib = 4096;
    const int id = next_id++;
    return Waiter{"i" + std::to_string(id),        "j" + std::to_string(id),      "team" + std::to_string(team),
                  static_cast<int>(rng() % 5) - 2, static_cast<kiln::TimeMs>(id), u};
  };
  for (int t = 0; t < kTeams; ++t)  // what runs already
    for (int k = 0; k < 10; ++k) {
      Waiter w = make(t);
      fs.Charge(w.instance_id, w.team, w.need);
    }
  for (int i = 0; i < kQueued; ++i) fs.Add(make(static_cast<int>(rng() % kTeams)));
  std::vector<double> us;
  us.reserve(static_cast<size_t>(decisions));
  int launched = 0;
  for (int i = 0; i < decisions; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto w = fs.PopNext();
    const auto t1 = std::chrono::steady_clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    if (w) {
      ++launched;
      fs.Charge(w->instance_id, w->team, w->need);
      fs.Served(w->team);
      fs.Add(make(static_cast<int>(rng() % kTeams)));
      if (launched % 3 == 0) fs.Release(w->instance_id);  // some end quickly
    }
  }
  printf(
      "{\"queued\": %zu, \"teams\": %d, \"decisions\": %d, \"launched\": %d, \"p50_us\": %.2f, \"p99_us\": %.2f, "
      "\"max_us\": %.2f}\n",
      fs.waiting(), kTeams, decisions, launched, Pct(us, 50), Pct(us, 99), Pct(us, 100));
  return 0;
}
