// Helpers shared by the test suites: where the shared fixtures are, scratch folders, and
// running the cachalot binary for end-to-end tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace cachalot::testing {

// ../shared/fixtures beside the checkout (CACHALOT_FIXTURES overrides).
std::string fixtures_dir();
// fixtures_dir()/name if it exists, else "" (callers GTEST_SKIP with a message).
std::string fixture_path(const std::string& name);

#define CACHALOT_REQUIRE_FIXTURE(var, name)                                                  \
  const std::string var = ::cachalot::testing::fixture_path(name);                          \
  if (var.empty()) GTEST_SKIP() << "fixture " << (name) << " not found under "              \
                               << ::cachalot::testing::fixtures_dir() << " (set CACHALOT_FIXTURES)"

// A fresh folder removed with its contents when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Copies the files of `from` (read-only fixtures) into `to`, writable, to damage or extend.
void copy_folder(const std::string& from, const TempDir& to);

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// The path of the built cachalot binary.
std::string cachalot_binary();

// Runs the built cachalot binary with args (no shell) and stdin_text on its standard input,
// capturing stdout and stderr.
CommandResult run_cachalot(const std::vector<std::string>& args, const std::string& stdin_text = "");

// Runs `command` through the shell; `out` gets stdout and stderr together.
CommandResult run_shell(const std::string& command);

// "mpirun --oversubscribe ... -np <ranks> " with what this machine needs to run it: root allowed
// (CI containers run as root), shared memory and self as the only byte transfer layers, leak
// checks off (OpenMPI keeps allocations until exit, which LeakSanitizer would report).
std::string mpirun_prefix(int ranks);

// `cachalot serve ... --port 0` running in the background for end-to-end tests: started by the
// constructor (which waits for the "listening" line and reads the port), stopped with SIGTERM
// by stop() or the destructor.
class ServerProcess {
 public:
  explicit ServerProcess(const std::vector<std::string>& serve_args);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  int port() const { return port_; }
  // Sends SIGTERM and waits; returns the exit code (128 + signal if killed).
  int stop();
  std::string stderr_text() const;

 private:
  TempDir io_;
  int pid_ = -1;
  int port_ = -1;
};

}  // namespace cachalot::testing
