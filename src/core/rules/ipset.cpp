#include "rules/ipset.hpp"

#include <libipset/data.h>
#include <libipset/ipset.h>
#include <libipset/session.h>
#include <libipset/types.h>

#include <cctype>
#include <cstdarg>
#include <cstdio>
#include <vector>

#include "util/files.hpp"

namespace knock::rules {

namespace {

bool alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
bool word_char(char c) { return alnum(c) || c == '_' || c == '.' || c == ':' || c == ',' || c == '/' || c == '-'; }
bool name_char(char c) { return alnum(c) || c == '_' || c == '.' || c == '-'; }

}  // namespace

std::optional<std::string> ipset_command_error(std::string_view text) {
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] == ' ') {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < text.size() && text[j] != ' ') {
      if (!word_char(text[j])) {
        const auto c = static_cast<unsigned char>(text[j]);
        char shown[8];
        std::snprintf(shown, sizeof shown, c > 32 && c < 127 ? "'%c'" : "0x%02x", c);
        return "character " + std::string(shown) + " at column " + std::to_string(j + 1) +
               " (only letters, digits, spaces and _ . : , / -)";
      }
      ++j;
    }
    const std::string_view word = text.substr(i, j - i);
    if (word.front() == '-')
      return "'" + std::string(word) + "': no options (every command runs as with -exist)";
    words.push_back(word);
    i = j;
  }
  if (words.empty() || (words[0] != "add" && words[0] != "del"))
    return "expected add or del, not '" + std::string(words.empty() ? "" : words[0]) + "'";
  if (words.size() < 3) return "expected " + std::string(words[0]) + " SETNAME ELEMENT [timeout N ...]";
  const std::string_view name = words[1];
  bool good_name = name.size() < IPSET_MAXNAMELEN;
  for (char c : name) good_name = good_name && name_char(c);
  if (!good_name)
    return "bad set name '" + std::string(name) + "' (at most " + std::to_string(IPSET_MAXNAMELEN - 1) +
           " letters, digits and _ . -)";
  return std::nullopt;
}

// libipset reports through callbacks: they keep the message and never print or exit (the
// library's defaults print to stderr and call exit() outside its interactive mode).
struct IpsetCallbacks {
  static void note(void* p, const char* message) noexcept {
    auto* self = static_cast<IpsetExecutor*>(p);
    if (self == nullptr || message == nullptr || !self->message_.empty()) return;  // the first one counts
    try {
      self->message_ = message;
      while (!self->message_.empty() && (self->message_.back() == '\n' || self->message_.back() == ' '))
        self->message_.pop_back();
      if (self->message_.empty()) self->message_ = "failed";
    } catch (...) {
    }
  }
  static int custom_error(::ipset* handle, void* p, int status, const char* format, ...)
      __attribute__((format(printf, 4, 5))) {
    if (status != IPSET_NO_PROBLEM && format != nullptr) {
      char text[IPSET_ERRORBUFLEN];
      va_list args;
      va_start(args, format);
      std::vsnprintf(text, sizeof text, format, args);
      va_end(args);
      note(p, text);
    }
    if (struct ipset_session* session = ipset_session(handle)) ipset_session_report_reset(session);
    return status == IPSET_NO_PROBLEM ? 0 : -1;
  }
  static int standard_error(::ipset* handle, void* p) {
    struct ipset_session* session = ipset_session(handle);
    if (ipset_session_report_type(session) == IPSET_ERROR) note(p, ipset_session_report_msg(session));
    ipset_session_report_reset(session);  // warnings (a success) are dropped
    return -1;
  }
  static int discard_output(struct ipset_session* /*session*/, void* /*p*/, const char* /*format*/, ...)
      __attribute__((format(printf, 3, 4))) {
    return 0;
  }
};

IpsetExecutor::IpsetExecutor() {
  // Registers the set types (hash:ip,port, ...) once per process. The daemon is single-threaded.
  static bool types_loaded = false;
  if (!types_loaded) {
    ipset_load_types();
    types_loaded = true;
  }
  handle_ = ipset_init();
  if (handle_ == nullptr) return;
  ipset_custom_printf(handle_, &IpsetCallbacks::custom_error, &IpsetCallbacks::standard_error,
                      &IpsetCallbacks::discard_output, this);
  ipset_envopt_set(ipset_session(handle_), IPSET_ENV_EXIST);
}

IpsetExecutor::~IpsetExecutor() {
  if (handle_ != nullptr) ipset_fini(handle_);
}

void IpsetExecutor::after_open() noexcept {
  if (socket_seen_ || handle_ == nullptr || ipset_session_handle(ipset_session(handle_)) == nullptr) return;
  socket_seen_ = true;
  // libipset opens its netlink socket (libmnl's mnl_socket_open) without SOCK_CLOEXEC, on the
  // first command: no command the daemon starts may inherit it.
  mark_all_close_on_exec();
}

void IpsetExecutor::prepare() noexcept {
  if (handle_ == nullptr) return;
  struct ipset_session* session = ipset_session(handle_);
  ipset_cmd(session, IPSET_CMD_NONE, 0);  // opens the socket, checks the kernel's protocol
  ipset_session_report_reset(session);
  after_open();
}

bool IpsetExecutor::run(const std::string& command, std::string* error) noexcept {
  std::string why;
  try {
    message_.clear();
    if (auto bad = ipset_command_error(command)) {
      why = "not run: " + *bad;
    } else if (handle_ == nullptr) {
      why = "libipset could not be initialised";
    } else {
      struct ipset_session* session = ipset_session(handle_);
      ipset_session_report_reset(session);
      ipset_data_reset(ipset_session_data(session));  // nothing left from a command that failed
      std::vector<char> line(command.begin(), command.end());
      line.push_back('\0');
      const int rc = ipset_parse_line(handle_, line.data());
      after_open();
      if (rc >= 0 && message_.empty()) return true;
      why = message_.empty() ? "failed" : message_;
    }
  } catch (...) {
    why = "out of memory";
  }
  if (error != nullptr) {
    try {
      *error = std::move(why);
    } catch (...) {
    }
  }
  return false;
}

}  // namespace knock::rules
