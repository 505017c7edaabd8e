#include "common/process.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/fd.h"

extern char** environ;

namespace kiln {

const char* FindProgram(std::initializer_list<const char*> candidates) {
  for (const char* c : candidates)
    if (access(c, X_OK) == 0) return c;
  return nullptr;
}

Status RunProgram(std::vector<std::string> argv, std::string_view input, ProgramOutput output) {
  std::string line;
  for (const auto& a : argv) line += (line.empty() ? "" : " ") + a;
  int in[2] = {-1, -1};
  if (!input.empty() && pipe2(in, O_CLOEXEC) != 0) return Internal(line + ": pipe: " + strerror(errno));
  UniqueFd read_end(in[0]), write_end(in[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (read_end.get() >= 0) posix_spawn_file_actions_adddup2(&fa, read_end.get(), 0);
  if (output == ProgramOutput::kDiscard) posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  std::vector<char*> av;
  av.reserve(argv.size() + 1);
  for (auto& a : argv) av.push_back(a.data());
  av.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, av[0], &fa, nullptr, av.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  read_end.reset();
  if (rc != 0) return Internal("spawn " + line + ": " + strerror(rc));
  for (size_t off = 0; off < input.size();) {
    ssize_t n = write(write_end.get(), input.data() + off, input.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;  // it stopped reading; its exit status says why
    off += static_cast<size_t>(n);
  }
  write_end.reset();
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return Internal(line + " failed (exit status " + std::to_string(st) + ")");
  return Status::Ok();
}

}  // namespace kiln
