//===- loopback_http_server.h - HTTP server for tests -----------*- C++ -*-===//
//-*-===//
//
// The tool tests (builtin_tools_test's http.get, external_tools_test's HTTP
// endpoints) talk to a real httplib server on loopback instead of a mock.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include <httplib.h>

namespace treni::testing_util {

/// An httplib server on 127.0.0.1 and an ephemeral port, for one test: add
/// routes to `server`, then start(); the destructor stops it. A test class
/// derives from it and sets up its routes in its constructor.
class LoopbackHttpServer {
public:
  LoopbackHttpServer() = default;
  LoopbackHttpServer(const LoopbackHttpServer &) = delete;
  LoopbackHttpServer &operator=(const LoopbackHttpServer &) = delete;
  ~LoopbackHttpServer() {
    stopping = true;
    server.stop();
    if (thread.joinable())
      thread.join();
  }

  /// Binds a free port (`port` stays -1 when that fails) and serves on a
  /// thread of its own.
  void start() {
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
  }

  std::string url(const std::string &path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }

  /// A handler that answers `content` after about 5 s (a slow endpoint, for
  /// timeouts), sooner once the server is being stopped, so that the test
  /// does not wait it out.
  httplib::Server::Handler slowHandler(std::string content,
                                       std::string contentType) {
    return [this, content = std::move(content),
            contentType = std::move(contentType)](const httplib::Request &,
                                                  httplib::Response &res) {
      using namespace std::chrono_literals;
      for (int i = 0; i < 200 && !stopping; ++i)
        std::this_thread::sleep_for(25ms);
      res.set_content(content, contentType);
    };
  }

  httplib::Server server;
  int port = -1;
  std::atomic<bool> stopping{false};

private:
  std::thread thread;
};

} // namespace treni::testing_util
