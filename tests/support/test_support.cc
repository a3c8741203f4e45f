#include "tests/support/test_support.h"

#include <fcntl.h>
#include <spawn.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

extern char** environ;

namespace cachalot::testing {

std::string fixtures_dir() {
  if (const char* env = std::getenv("CACHALOT_FIXTURES")) return env;
  return CACHALOT_TEST_FIXTURES_DIR;
}

std::string fixture_path(const std::string& name) {
  const auto path = std::filesystem::path(fixtures_dir()) / name;
  return std::filesystem::exists(path) ? path.string() : std::string();
}

TempDir::TempDir() {
  std::string templ = (std::filesystem::temp_directory_path() / "cachalot-test-XXXXXX").string();
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void copy_folder(const std::string& from, const TempDir& to) {
  namespace fs = std::filesystem;
  for (const auto& entry : fs::directory_iterator(from)) {
    const std::string target = to.file(entry.path().filename().string());
    fs::copy_file(entry.path(), target);
    fs::permissions(target, fs::perms::owner_write, fs::perm_options::add);
  }
}

namespace {
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

std::string cachalot_binary() { return CACHALOT_TEST_BINARY; }

CommandResult run_cachalot(const std::vector<std::string>& args, const std::string& stdin_text) {
  TempDir io;
  const std::string out_path = io.file("stdout"), err_path = io.file("stderr"), in_path = io.file("stdin");
  {
    std::ofstream in(in_path, std::ios::binary);
    in << stdin_text;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 0, in_path.c_str(), O_RDONLY, 0);
  std::vector<std::string> argv_storage = {CACHALOT_TEST_BINARY};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  CommandResult result;
  if (posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ) != 0) {
    posix_spawn_file_actions_destroy(&actions);
    throw std::runtime_error(std::string("cannot start ") + argv[0]);
  }
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = slurp(out_path);
  result.err = slurp(err_path);
  return result;
}

CommandResult run_shell(const std::string& command) {
  CommandResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot start: " + command);
  std::array<char, 4096> buf{};
  while (fgets(buf.data(), buf.size(), pipe) != nullptr) r.out += buf.data();
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::string mpirun_prefix(int ranks) {
  std::string env = "ASAN_OPTIONS=detect_leaks=0 ";
  if (geteuid() == 0) env += "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ";
  return env + CACHALOT_TEST_MPIEXEC + std::string(" --oversubscribe --mca btl self,vader -np ") + std::to_string(ranks) + " ";
}

ServerProcess::ServerProcess(const std::vector<std::string>& serve_args) {
  const std::string out_path = io_.file("stdout"), err_path = io_.file("stderr");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> argv_storage = {CACHALOT_TEST_BINARY, "serve", "--port", "0"};
  argv_storage.insert(argv_storage.end(), serve_args.begin(), serve_args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start cachalot serve");
  // The server prints "... on http://HOST:PORT (...)" once it listens.
  for (int i = 0; i < 600 && port_ < 0; ++i) {
    const std::string out = slurp(out_path);
    const std::size_t at = out.find("http://");
    if (at != std::string::npos) {
      const std::size_t colon = out.find(':', at + 7);
      if (colon != std::string::npos && out.find(' ', colon) != std::string::npos) port_ = std::stoi(out.substr(colon + 1));
    }
    int status = 0;
    if (port_ < 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("cachalot serve exited early: " + slurp(err_path));
    }
    if (port_ < 0) ::usleep(100000);
  }
  if (port_ < 0) {
    stop();
    throw std::runtime_error("cachalot serve did not start listening within 60 s");
  }
}

ServerProcess::~ServerProcess() { stop(); }

int ServerProcess::stop() {
  if (pid_ < 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string ServerProcess::stderr_text() const { return slurp(io_.file("stderr")); }

}  // namespace cachalot::testing
