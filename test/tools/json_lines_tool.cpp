//===- json_lines_tool.cpp - a JSON-lines tool process for the tests ------===//
//
// Speaks the external tool protocol (runtime/tools/external_tools.h) on
// stdin/stdout and misbehaves on request, so the tests can check every way
// a tool process can fail:
//   echo {..}            -> the arguments
//   add {a, b}           -> a + b
//   pid                  -> this process's pid
//   env {name}           -> the environment variable (null if unset)
//   environ              -> the names of every environment variable
//   deep {depth}         -> a result of `depth` nested arrays
//   big {bytes}          -> a string of that many bytes
//   cwd                  -> the working directory
//   fail {type?}         -> an error of that type
//   crash {code?}        -> writes "crashing" to stderr, exits with code (3)
//   crash_if_pid {pid}   -> crashes when it is that process, else "survived"
//   hang                 -> never answers
//   hang_with_child {pid_file} -> forks a child that sleeps forever (holding
//                           the pipes), writes its pid to pid_file, hangs
//   sleep {ms}           -> answers after ms
//   garbage              -> a line that is not JSON
//   wrong_id             -> an answer with another id
//   stderr {text, count} -> writes text count times to stderr, answers
//
//===----------------------------------------------------------------------===//

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

extern char **environ;

using json = nlohmann::json;

namespace {

void answer(const json &response) {
  std::cout << response.dump() << "\n" << std::flush;
}

[[noreturn]] void hangForever() {
  while (true)
    ::pause();
}

[[noreturn]] void crash(int code) {
  std::cerr << "crashing" << std::endl;
  std::_Exit(code);
}

} // namespace

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    json request = json::parse(line, nullptr, false);
    if (request.is_discarded()) {
      std::cerr << "bad request line: " << line << std::endl;
      continue;
    }
    json id = request.value("id", json());
    std::string tool = request.value("tool", "");
    json args = request.value("args", json::object());
    json ok = {{"id", id}, {"ok", true}};
    if (tool == "echo") {
      ok["result"] = args;
      answer(ok);
    } else if (tool == "add") {
      ok["result"] = args.value("a", 0) + args.value("b", 0);
      answer(ok);
    } else if (tool == "env") {
      const char *value = std::getenv(args.value("name", "").c_str());
      ok["result"] = value ? json(value) : json();
      answer(ok);
    } else if (tool == "environ") {
      json names = json::array();
      for (char **entry = environ; *entry; ++entry) {
        std::string text = *entry;
        names.push_back(text.substr(0, text.find('=')));
      }
      ok["result"] = names;
      answer(ok);
    } else if (tool == "deep") {
      // Written as text: building it as a json value and dumping it would
      // recurse as deep.
      size_t depth = args.value("depth", 1);
      std::cout << "{\"id\":" << id.dump()
                << ",\"ok\":true,\"result\":" << std::string(depth, '[')
                << std::string(depth, ']') << "}\n"
                << std::flush;
    } else if (tool == "big") {
      ok["result"] = std::string(args.value("bytes", size_t(0)), 'b');
      answer(ok);
    } else if (tool == "cwd") {
      char buffer[4096];
      ok["result"] = ::getcwd(buffer, sizeof(buffer)) ? json(buffer) : json();
      answer(ok);
    } else if (tool == "pid") {
      ok["result"] = int(::getpid());
      answer(ok);
    } else if (tool == "fail") {
      answer({{"id", id},
              {"ok", false},
              {"error",
               {{"type", args.value("type", "bad_input")},
                {"message", "asked to fail"}}}});
    } else if (tool == "crash") {
      crash(args.value("code", 3));
    } else if (tool == "crash_if_pid") {
      if (args.value("pid", -1) == int(::getpid()))
        crash(3);
      ok["result"] = "survived";
      answer(ok);
    } else if (tool == "hang") {
      hangForever();
    } else if (tool == "hang_with_child") {
      pid_t child = ::fork();
      if (child == 0)
        hangForever();
      std::ofstream(args.value("pid_file", "")) << child << "\n";
      hangForever();
    } else if (tool == "sleep") {
      std::this_thread::sleep_for(
          std::chrono::milliseconds(args.value("ms", 0)));
      ok["result"] = "slept";
      answer(ok);
    } else if (tool == "garbage") {
      std::cout << "this is not json\n" << std::flush;
    } else if (tool == "wrong_id") {
      ok["id"] = id.is_number_integer() ? id.get<int64_t>() + 1000 : 0;
      answer(ok);
    } else if (tool == "stderr") {
      std::string text = args.value("text", "x");
      for (int i = 0, n = args.value("count", 1); i < n; ++i)
        std::cerr << text;
      std::cerr << std::flush;
      ok["result"] = "written";
      answer(ok);
    } else {
      answer({{"id", id},
              {"ok", false},
              {"error",
               {{"type", "unknown_tool"}, {"message", "no tool " + tool}}}});
    }
  }
  return 0;
}
