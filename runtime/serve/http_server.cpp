//===- http_server.cpp - the OpenAI-compatible HTTP server ---------------===//
//
// The only file that includes Boost (Beast for HTTP/1.1, asio for sockets and
// timers). Why Beast and not cpp-httplib: httplib serves a connection on a
// pool thread from its first byte to its last, with only a per-recv timeout,
// so 30 connections that send one header line every 2 s held every thread
// and /health timed out; its listen backlog is compiled into Debian's library
// (5). libmicrohttpd has only an inactivity timeout, which such a client
// resets with every line. Here every connection is a chain of asynchronous
// operations under a whole-phase deadline (beast::tcp_stream::expires_after):
// headers, body, each write.
//
//===----------------------------------------------------------------------===//

#include "runtime/serve/http_server.h"

#include <malloc.h>
#include <sys/socket.h>

#include <cerrno>

#include <array>
#include <csignal>
#include <cstdio>
#include <limits>
#include <unordered_map>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/serve/http_access.h"
#include "runtime/serve/http_job.h"
#include "support/ascii.h"
#include "support/json_bounded.h"

namespace treni {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using json = nlohmann::json;

using namespace http_detail;

namespace {

/// Request headers larger than this answer 431.
constexpr uint32_t kMaxHeaderBytes = 16 * 1024;
/// After a request body this large, free memory goes back to the system.
constexpr size_t kTrimAfterBodyBytes = 1 << 20;
/// glibc makes up to 8 arenas per core, each keeping what it once held: a
/// multi-MiB body parsed on one thread and freed on another stays resident.
constexpr int kMallocArenas = 4;
/// A connection closed after an error answer (its body unread) reads and
/// drops what the client still sends for at most this long and this much,
/// so that the client reads the answer instead of a reset.
constexpr std::chrono::seconds kLingerTime{1};
constexpr size_t kLingerBytes = 8 << 20;
constexpr int kRequestPoolThreads = 2;
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

/// `value` seconds, at most about 30 years (an infinite or absurd option
/// must not overflow the clock).
Clock::duration seconds(double value) {
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(value < 1e9 ? value : 1e9));
}

ApiError requestError(int status, std::string message, std::string code) {
  return serverError(status, std::move(message), "invalid_request_error",
                     std::move(code));
}

/// A header value quoted in an error message, cut short.
std::string quote(std::string_view value) {
  return "'" + std::string(value.substr(0, 100)) +
         (value.size() > 100 ? "...'" : "'");
}

/// The checks every JSON body gets before it is parsed: nlohmann stops at a
/// NUL byte and would accept what follows unread; the values built from a
/// deeply nested document are copied and rendered recursively.
std::optional<ApiError> checkJsonBody(std::string_view body) {
  if (size_t at = body.find('\0'); at != std::string_view::npos)
    return invalidRequest(absl::StrCat("the request body is not valid JSON: "
                                       "a NUL byte at byte ",
                                       at),
                          "", "invalid_json");
  if (jsonNestingDepth(body, kMaxJsonDepth) > kMaxJsonDepth)
    return invalidRequest(absl::StrCat("the request body nests arrays and "
                                       "objects deeper than ",
                                       kMaxJsonDepth, " levels"),
                          "", "invalid_json");
  return std::nullopt;
}

std::string percentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    int high, low;
    if (text[i] == '%' && i + 2 < text.size() &&
        (high = hexDigitValue(text[i + 1])) >= 0 &&
        (low = hexDigitValue(text[i + 2])) >= 0) {
      out += char(high * 16 + low);
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

/// The address a per-client limit counts by (IPv4-mapped IPv6 as IPv4).
std::string clientAddress(const net::ip::address &address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped())
    return net::ip::make_address_v4(net::ip::v4_mapped, address.to_v6())
        .to_string();
  return address.to_string();
}

} // namespace

struct HttpServer::Impl {
  explicit Impl(HttpServer &server)
      : server(server), acceptor(net::make_strand(io)),
        acceptRetry(acceptor.get_executor()), requestPool(kRequestPoolThreads),
        workGuard(io.get_executor()) {}

  void accept();
  void onAccept(beast::error_code ec, tcp::socket socket);

  HttpServer &server;
  net::io_context io;
  tcp::acceptor acceptor;
  net::steady_timer acceptRetry;
  net::thread_pool requestPool;
  net::executor_work_guard<net::io_context::executor_type> workGuard;
  std::vector<std::thread> ioThreads;
  AccessPolicy access;
  std::atomic<bool> stopping{false};

  /// The open connections: counts (total and per client address) and a
  /// registry for stop().
  std::mutex mutex;
  std::condition_variable allClosed;
  int open = 0;
  std::unordered_map<std::string, int> perClient;
  std::unordered_map<Connection *, std::weak_ptr<Connection>> connections;
};

/// One TCP connection: reads requests one after another (keep-alive), each
/// within its header and body deadlines, and writes their answers. All of
/// its handlers run on its strand; the Job is the only state it shares
/// with the worker.
struct HttpServer::Connection : std::enable_shared_from_this<Connection> {
  enum class Route {
    None,
    Health,
    Metrics,
    Models,
    Model,
    Chat,
    Completion,
    Streamed,
    Json
  };

  Connection(HttpServer &server, tcp::socket socket, std::string client)
      : server(server), impl(*server.impl_), options(server.options_),
        stream(std::move(socket)), client(std::move(client)),
        jobTimer(stream.get_executor()) {}
  ~Connection() {
    if (!counted)
      return;
    std::lock_guard<std::mutex> lock(impl.mutex);
    --impl.open;
    if (admitted && --impl.perClient[client] == 0)
      impl.perClient.erase(client);
    impl.connections.erase(this);
    impl.allClosed.notify_all();
  }

  void start() {
    if (admitted)
      return readRequest();
    endpoint = "other";
    // Past the per-client limit: one answer, then the connection closes.
    respondError(serverError(503,
                             absl::StrCat("too many connections from ", client,
                                          " (--max-connections-per-client ",
                                          options.maxConnectionsPerClient, ")"),
                             "server_error", "too_many_connections"),
                 /*close=*/true);
  }

  /// stop(): a connection waiting for a request closes; one serving a
  /// request finishes it (its answer says Connection: close).
  void onServerStop() {
    if (idle)
      closeNow();
  }

  void readRequest() {
    idle = true;
    responded = streaming = false;
    route = Route::None;
    if (impl.stopping)
      return closeNow();
    parser.emplace();
    parser->header_limit(kMaxHeaderBytes);
    // The body's size is checked after the access checks (onHeader).
    parser->body_limit(std::numeric_limits<std::uint64_t>::max());
    stream.expires_after(seconds(options.headerTimeoutSeconds));
    http::async_read_header(
        stream, buffer, *parser,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          self->onHeader(ec);
        });
  }

  void onHeader(beast::error_code ec) {
    idle = false;
    const auto &request = parser->get();
    method = std::string(request.method_string());
    std::string_view target = request.target();
    path = std::string(target.substr(0, target.find('?')));
    version = request.version() == 10 ? 10 : 11;
    keepAlive = false;
    matchRoute();
    if (ec == http::error::header_limit)
      return respondError(
          requestError(431,
                       absl::StrCat("the request headers are larger than ",
                                    kMaxHeaderBytes, " bytes"),
                       "headers_too_large"),
          /*close=*/true);
    if (ec == beast::error::timeout || ec == http::error::end_of_stream ||
        ec == net::error::eof || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset)
      return closeNow();
    if (ec)
      return respondError(requestError(400,
                                       absl::StrCat("malformed HTTP request (",
                                                    ec.message(), ")"),
                                       "malformed_request"),
                          /*close=*/true);
    keepAlive = request.keep_alive();
    std::vector<std::pair<std::string, std::string>> headers;
    if (std::optional<ApiError> error = checkAccess(headers))
      return respondError(*error, /*close=*/!parser->is_done(),
                          std::move(headers));
    if (boost::optional<uint64_t> length = parser->content_length();
        length && *length > options.maxBodyBytes)
      return respondError(bodyTooLarge(), /*close=*/true);
    parser->body_limit(options.maxBodyBytes); // a chunked body's
    if (parser->is_done())
      return onBody({});
    auto expect = request.find(http::field::expect);
    if (expect != request.end() &&
        beast::iequals(expect->value(), "100-continue")) {
      stream.expires_after(seconds(options.writeTimeoutSeconds));
      return net::async_write(
          stream, net::buffer(kContinue),
          [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec)
              return self->closeNow();
            self->readBody();
          });
    }
    readBody();
  }

  void matchRoute() {
    endpoint = "other";
    allowed = "GET";
    if (path == "/health") {
      route = Route::Health;
    } else if (path == "/metrics") {
      route = Route::Metrics;
    } else if (path == "/v1/models") {
      route = Route::Models;
    } else if (absl::StartsWith(path, "/v1/models/")) {
      route = Route::Model;
      modelId = percentDecode(std::string_view(path).substr(11));
      endpoint = "/v1/models";
    } else if (path == "/v1/chat/completions") {
      route = Route::Chat;
    } else if (path == "/v1/completions") {
      route = Route::Completion;
    } else {
      route = Route::None;
      for (size_t i = 0; i < server.streamedRoutes_.size(); ++i)
        if (server.streamedRoutes_[i].path == path) {
          route = Route::Streamed;
          streamedRoute = i;
        }
      for (const JsonRoute &json : server.jsonRoutes_)
        if (json.path == path)
          route = Route::Json; // the model's route: prepareJob
    }
    if (route == Route::Chat || route == Route::Completion ||
        route == Route::Streamed || route == Route::Json)
      allowed = "POST";
    if (route != Route::None && route != Route::Model)
      endpoint = path;
  }

  /// Host, Origin, the API key, the route and method, the content type:
  /// the error that answers the request (its body unread), if any.
  std::optional<ApiError>
  checkAccess(std::vector<std::pair<std::string, std::string>> &headers) {
    const auto &request = parser->get();
    auto host = request.find(http::field::host);
    std::string_view hostValue;
    if (host == request.end()) {
      if (version >= 11)
        return requestError(400, "an HTTP/1.1 request needs a Host header",
                            "invalid_host");
    } else {
      hostValue = host->value();
      if (!impl.access.hostAllowed(hostValue))
        return requestError(403,
                            absl::StrCat("the Host header ", quote(hostValue),
                                         " does not name this server (see "
                                         "treni serve --allowed-hosts)"),
                            "invalid_host");
    }
    auto origin = request.find(http::field::origin);
    if (origin != request.end() &&
        !AccessPolicy::originAllowed(origin->value(), hostValue))
      return requestError(
          403,
          absl::StrCat("cross-origin requests are refused (Origin ",
                       quote(origin->value()), ")"),
          "invalid_origin");
    if (route != Route::Health && impl.access.keyRequired()) {
      auto authorization = request.find(http::field::authorization);
      if (authorization == request.end() ||
          !impl.access.keyMatches(authorization->value())) {
        headers.emplace_back("WWW-Authenticate", "Bearer");
        return requestError(401,
                            "a missing or incorrect API key: send "
                            "'Authorization: Bearer <key>'",
                            "invalid_api_key");
      }
    }
    if (route == Route::None)
      return requestError(404, absl::StrCat("no route for ", method, " ", path),
                          "not_found");
    if (method != allowed) {
      headers.emplace_back("Allow", allowed);
      return requestError(
          405,
          absl::StrCat(method, " is not allowed on ", path, "; use ", allowed),
          "method_not_allowed");
    }
    if (allowed == std::string_view("POST")) {
      auto type = request.find(http::field::content_type);
      std::string_view mediaType = type == request.end() ? "" : type->value();
      mediaType = mediaType.substr(0, mediaType.find(';'));
      while (!mediaType.empty() &&
             (mediaType.back() == ' ' || mediaType.back() == '\t'))
        mediaType.remove_suffix(1); // "application/json ; charset=utf-8"
      if (!beast::iequals(mediaType, "application/json"))
        return requestError(
            415,
            absl::StrCat("the request body must be JSON sent as "
                         "Content-Type: application/json, not ",
                         mediaType.empty() ? "no Content-Type"
                                           : quote(mediaType)),
            "unsupported_media_type");
    }
    return std::nullopt;
  }

  ApiError bodyTooLarge() const {
    return requestError(
        413,
        absl::StrCat("the request body is larger than the server's "
                     "limit of ",
                     options.maxBodyBytes, " bytes (--max-body-kib)"),
        "body_too_large");
  }

  void readBody() {
    stream.expires_after(seconds(options.bodyTimeoutSeconds));
    http::async_read(stream, buffer, *parser,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->onBody(ec);
                     });
  }

  void onBody(beast::error_code ec) {
    if (ec == http::error::body_limit)
      return respondError(bodyTooLarge(), /*close=*/true);
    if (ec == beast::error::timeout || ec == http::error::end_of_stream ||
        ec == http::error::partial_message || ec == net::error::eof ||
        ec == net::error::operation_aborted ||
        ec == net::error::connection_reset)
      return closeNow();
    if (ec)
      return respondError(
          requestError(
              400,
              absl::StrCat("malformed HTTP request body (", ec.message(), ")"),
              "malformed_request"),
          /*close=*/true);
    bodyBytes = parser->get().body().size();
    try {
      handleRequest();
    } catch (const std::exception &error) {
      logInternalError(absl::StrCat(method, " ", path), error.what());
      respondError(internalError());
    } catch (...) {
      logInternalError(absl::StrCat(method, " ", path), "unknown exception");
      respondError(internalError());
    }
  }

  void handleRequest() {
    switch (route) {
    case Route::Health: {
      bool draining;
      {
        std::lock_guard<std::mutex> lock(server.mutex_);
        draining = server.draining_;
      }
      json models = json::array();
      for (const auto &endpoint : server.endpoints_)
        models.push_back(endpoint->served.model.name);
      return respond(draining ? 503 : 200,
                     dumpJson({{"status", draining ? "shutting_down" : "ok"},
                               {"model", models[0]},
                               {"models", std::move(models)},
                               {"queue_depth", server.metrics_.queueDepth()},
                               {"running", server.metrics_.running()}}),
                     "application/json");
    }
    case Route::Metrics:
      return respond(200, server.metricsText(), "text/plain; version=0.0.4");
    case Route::Models: {
      json data = json::array();
      for (const auto &endpoint : server.endpoints_)
        data.push_back(server.modelObject(*endpoint));
      return respond(200, dumpJson({{"object", "list"}, {"data", data}}),
                     "application/json");
    }
    case Route::Model:
      if (const Endpoint *endpoint = server.findEndpoint(modelId))
        return respond(200, dumpJson(server.modelObject(*endpoint)),
                       "application/json");
      return respondError(server.modelNotFound(modelId));
    case Route::Chat:
    case Route::Completion:
    case Route::Streamed:
    case Route::Json:
      break;
    case Route::None:
      return;
    }
    // Parsing and validating the body is CPU work: the request pool does it.
    net::post(impl.requestPool,
              [self = shared_from_this(), route = route, index = streamedRoute,
               body = std::move(parser->get().body())]() mutable {
                ApiResult<std::shared_ptr<Job>> job = internalError();
                try {
                  job = self->prepareJob(route, index, std::move(body));
                } catch (const std::exception &error) {
                  logInternalError(absl::StrCat(self->method, " ", self->path),
                                   error.what());
                } catch (...) {
                  logInternalError(absl::StrCat(self->method, " ", self->path),
                                   "unknown exception");
                }
                net::post(self->stream.get_executor(),
                          [self, job = std::move(job)]() mutable {
                            self->onPrepared(std::move(job));
                          });
              });
  }

  /// The model a chat, completion or JSON route's request goes to: the one
  /// its `model` names, or without a name (the parser then says what is
  /// missing) the first that serves the route.
  ApiResult<Endpoint *> routeEndpoint(Route route,
                                      std::string_view body) const {
    std::optional<std::string> name = requestedModel(body);
    auto serves = [&](const Endpoint &endpoint) {
      if (route != Route::Json)
        return endpoint.served.kind == ModelKind::Chat;
      for (const JsonRoute &json : server.jsonRoutes_)
        if (json.path == path && json.endpoint == &endpoint)
          return true;
      return false;
    };
    std::vector<std::string> serving;
    Endpoint *first = nullptr;
    for (const auto &endpoint : server.endpoints_)
      if (serves(*endpoint)) {
        serving.push_back("'" + endpoint->served.model.name + "'");
        if (!first)
          first = endpoint.get();
      }
    Endpoint *endpoint = name ? server.findEndpoint(*name) : first;
    if (endpoint && serves(*endpoint))
      return endpoint;
    // A body that is no JSON gets the parser's answer before any about its
    // model (the scan stopped at the name).
    if (first && !json::accept(body))
      return first;
    if (name && !endpoint)
      return server.modelNotFound(*name);
    // "a chat model", "an embedding model": what the route needs.
    auto kindText = [](ModelKind kind) {
      return absl::StrCat(kind == ModelKind::Chat ? "a " : "an ",
                          modelKindName(kind), " model");
    };
    return invalidRequest(
        absl::StrCat(
            name ? absl::StrCat("the model '", *name, "' is ",
                                kindText(endpoint->served.kind), "; ")
                 : "",
            "POST ", path, " needs ",
            first ? kindText(first->served.kind) : kindText(ModelKind::Chat),
            serving.empty() ? ", and this server has none"
                            : absl::StrCat(" (this server's: ",
                                           absl::StrJoin(serving, ", "), ")")),
        "model", "wrong_model_kind");
  }

  /// On the request pool.
  ApiResult<std::shared_ptr<Job>> prepareJob(Route route, size_t index,
                                             std::string body) const {
    if (std::optional<ApiError> error = checkJsonBody(body))
      return *error;
    auto job = std::make_shared<Job>();
    if (route == Route::Streamed) {
      job->endpoint = server.streamedEndpoint();
    } else {
      ApiResult<Endpoint *> endpoint = routeEndpoint(route, body);
      if (auto *error = std::get_if<ApiError>(&endpoint))
        return *error;
      job->endpoint = std::get<Endpoint *>(endpoint);
    }
    const ApiLimits &limits = job->endpoint->limits;
    if (route == Route::Chat) {
      ApiResult<ChatRequest> parsed = parseChatRequest(body, limits);
      if (auto *error = std::get_if<ApiError>(&parsed))
        return *error;
      job->kind = Job::Kind::Chat;
      job->chat = std::move(std::get<ChatRequest>(parsed));
      job->stream = job->chat.stream;
    } else if (route == Route::Completion) {
      ApiResult<CompletionRequest> parsed =
          parseCompletionRequest(body, limits);
      if (auto *error = std::get_if<ApiError>(&parsed))
        return *error;
      job->kind = Job::Kind::Completion;
      job->completion = std::move(std::get<CompletionRequest>(parsed));
      job->stream = job->completion.stream;
    } else if (route == Route::Json) {
      job->kind = Job::Kind::Json;
      JsonWork work;
      for (const JsonRoute &json : server.jsonRoutes_)
        if (json.path == path && json.endpoint == job->endpoint)
          work = json.work;
      job->work = [work = std::move(work), body = std::move(body)](Job &j) {
        ApiResult<std::string> answer = work(body, j.cancel, j.deadline);
        if (auto *error = std::get_if<ApiError>(&answer))
          return j.finish(*error);
        {
          std::lock_guard<std::mutex> lock(j.mutex);
          j.body = std::move(std::get<std::string>(answer));
        }
        j.finish();
      };
    } else {
      job->kind = Job::Kind::Streamed;
      job->stream = true;
      job->concurrent = server.streamedRoutes_[index].concurrent;
      job->work = [work = server.streamedRoutes_[index].work,
                   body = std::move(body)](Job &j) {
        work(
            body,
            [&j](const std::string &data) {
              j.push({"data: " + data + "\n\n"});
            },
            j.cancel);
      };
    }
    return job;
  }

  void onPrepared(ApiResult<std::shared_ptr<Job>> prepared) {
    if (auto *error = std::get_if<ApiError>(&prepared))
      return respondError(*error);
    job = std::move(std::get<std::shared_ptr<Job>>(prepared));
    job->submitted = Clock::now();
    job->deadline = job->submitted + seconds(options.requestTimeoutSeconds);
    // The job keeps the connection alive while the worker has it; the
    // connection drops the job once answered or closed.
    job->notify = [self = shared_from_this()] {
      net::post(self->stream.get_executor(), [self] { self->pump(); });
    };
    if (std::optional<ApiError> error = server.enqueue(job))
      return respondError(*error);
    jobTimer.expires_at(job->deadline);
    jobTimer.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec)
        self->onJobDeadline();
    });
    watchDisconnect();
    pump();
  }

  /// While a request waits or generates and nothing is written yet, the
  /// socket is not read; a client that closes its end meanwhile would go
  /// unnoticed until the answer is written. Waits for the socket to turn
  /// readable without reading: end of stream (or an error) cancels the job
  /// and closes; bytes (a pipelined request) are left for readRequest().
  void watchDisconnect() {
    stream.socket().async_wait(
        tcp::socket::wait_read,
        [self = shared_from_this(), watched = job](beast::error_code ec) {
          if (ec || self->job != watched || self->responded || self->streaming)
            return;
          char byte;
          ssize_t n = ::recv(self->stream.socket().native_handle(), &byte, 1,
                             MSG_PEEK | MSG_DONTWAIT);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                         errno != EINTR))
            return self->closeNow(); // cancels the job
          if (n < 0)                 // spurious wake-up
            self->watchDisconnect();
        });
  }

  /// Before a stream starts: a request still queued or generating at its
  /// deadline answers 504 (a started stream ends with the worker's event).
  void onJobDeadline() {
    if (!job || responded || streaming)
      return;
    {
      std::lock_guard<std::mutex> lock(job->mutex);
      if (job->done || (job->stream && job->started))
        return; // its pump is on the way
    }
    job->cancel = true;
    server.metrics_.countTimeout();
    respondError(timeoutError(options.requestTimeoutSeconds));
  }

  /// Moves the job's progress to the client: the whole answer once done, or
  /// a stream's header, then its events as they come, then its end.
  void pump() {
    if (!job || responded || writing)
      return;
    std::deque<std::string> batch;
    bool done, started;
    std::optional<ApiError> error;
    std::string body;
    {
      std::lock_guard<std::mutex> lock(job->mutex);
      done = job->done;
      started = job->started;
      if (streaming)
        batch.swap(job->events);
      else if (done && !(job->stream && started)) {
        error = job->error;
        body = std::move(job->body);
      }
    }
    if (!streaming) {
      if (done && !(job->stream && started)) {
        if (error)
          return respondError(*error);
        return respond(200, std::move(body), "application/json");
      }
      if (job->stream && started)
        startStream();
      return;
    }
    if (!batch.empty()) {
      std::string data;
      for (const std::string &event : batch)
        data += event;
      return writeStreamData(std::move(data));
    }
    if (done)
      finishStream();
  }

  void startStream() {
    jobTimer.cancel();
    streaming = writing = true;
    server.metrics_.countRequest(endpoint, 200);
    streamHead.emplace(http::status::ok, version);
    streamHead->set(http::field::content_type, "text/event-stream");
    streamHead->set(http::field::cache_control, "no-cache");
    streamHead->set("X-Accel-Buffering", "no");
    chunked = version >= 11;
    streamHead->keep_alive(chunked && keepAlive && !impl.stopping);
    if (chunked)
      streamHead->chunked(true);
    streamSerializer.emplace(*streamHead);
    stream.expires_after(seconds(options.writeTimeoutSeconds));
    http::async_write_header(
        stream, *streamSerializer,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          self->afterStreamWrite(ec);
        });
  }

  void writeStreamData(std::string data) {
    writing = true;
    pending = std::move(data);
    stream.expires_after(seconds(options.writeTimeoutSeconds));
    auto done = [self = shared_from_this()](beast::error_code ec, size_t) {
      self->afterStreamWrite(ec);
    };
    if (chunked)
      net::async_write(stream, http::make_chunk(net::buffer(pending)), done);
    else
      net::async_write(stream, net::buffer(pending), done);
  }

  void afterStreamWrite(beast::error_code ec) {
    writing = false;

    if (ec) {
      job->cancel = true; // the client went away, or stopped reading
      return closeNow();
    }
    pump();
  }

  void finishStream() {
    bool close = !streamHead->keep_alive();
    if (!chunked)
      return afterResponse({}, close);
    writing = true;
    stream.expires_after(seconds(options.writeTimeoutSeconds));
    net::async_write(
        stream, http::make_chunk_last(),
        [self = shared_from_this(), close](beast::error_code ec, size_t) {
          self->writing = false;
          self->afterResponse(ec, close);
        });
  }

  void respond(int status, std::string body, std::string_view contentType,
               std::vector<std::pair<std::string, std::string>> headers = {},
               bool close = false) {
    responded = true;
    jobTimer.cancel();
    auto response = std::make_shared<http::response<http::string_body>>(
        http::status(status), version);
    response->set(http::field::content_type, contentType);
    for (auto &[name, value] : headers)
      response->set(name, value);
    response->keep_alive(keepAlive && !close && !impl.stopping);
    response->body() = std::move(body);
    response->prepare_payload();
    server.metrics_.countRequest(endpoint, status);
    stream.expires_after(seconds(options.writeTimeoutSeconds));
    http::async_write(
        stream, *response,
        [self = shared_from_this(), response](beast::error_code ec, size_t) {
          self->afterResponse(ec, !response->keep_alive());
        });
  }

  void
  respondError(const ApiError &error, bool close = false,
               std::vector<std::pair<std::string, std::string>> headers = {}) {
    server.metrics_.countError(error.type);
    respond(error.status, dumpJson(error.toJson()), "application/json",
            std::move(headers), close);
  }

  void afterResponse(beast::error_code ec, bool close) {
    jobTimer.cancel();
    job.reset();
    streamSerializer.reset();
    streamHead.reset();
    parser.reset();
    if (bodyBytes >= kTrimAfterBodyBytes)
      malloc_trim(0); // the body, its parse and its copies are freed
    bodyBytes = 0;
    if (ec)
      return closeNow();
    if (close)
      return lingeringClose();
    readRequest();
  }

  void lingeringClose() {
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.expires_after(kLingerTime);
    drain();
  }

  void drain() {
    stream.async_read_some(
        net::buffer(scratch),
        [self = shared_from_this()](beast::error_code ec, size_t bytes) {
          self->drained += bytes;
          if (ec || self->drained > kLingerBytes)
            return self->closeNow();
          self->drain();
        });
  }

  void closeNow() {
    if (job) {
      job->cancel = true; // nobody is left to answer
      job.reset();
    }
    jobTimer.cancel();
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
  }

  HttpServer &server;
  Impl &impl;
  const ServerOptions &options;
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  std::string client;
  bool admitted = false, counted = false;

  // The request being served.
  std::optional<http::request_parser<http::string_body>> parser;
  Route route = Route::None;
  size_t streamedRoute = 0;
  std::string method, path, endpoint, modelId;
  const char *allowed = "GET";
  unsigned version = 11;
  bool keepAlive = false;
  bool idle = true;       ///< waiting for a request's headers
  bool responded = false; ///< a whole answer is being written
  size_t bodyBytes = 0;
  std::shared_ptr<Job> job;
  net::steady_timer jobTimer;

  // A stream's answer.
  bool streaming = false, writing = false, chunked = true;
  std::optional<http::response<http::empty_body>> streamHead;
  std::optional<http::response_serializer<http::empty_body>> streamSerializer;
  std::string pending; ///< the data being written

  std::array<char, 16 * 1024> scratch; ///< what a lingering close drops
  size_t drained = 0;
};

void HttpServer::Impl::accept() {
  acceptor.async_accept(net::make_strand(io),
                        [this](beast::error_code ec, tcp::socket socket) {
                          onAccept(ec, std::move(socket));
                        });
}

void HttpServer::Impl::onAccept(beast::error_code ec, tcp::socket socket) {
  if (ec == net::error::operation_aborted || !acceptor.is_open())
    return;
  if (ec) {
    // Out of file descriptors, most likely: wait for connections to close.
    acceptRetry.expires_after(std::chrono::milliseconds(100));
    acceptRetry.async_wait([this](beast::error_code ec) {
      if (!ec)
        accept();
    });
    return;
  }
  beast::error_code peerError;
  tcp::endpoint peer = socket.remote_endpoint(peerError);
  if (!peerError) {
    auto connection = std::make_shared<Connection>(
        server, std::move(socket), clientAddress(peer.address()));
    bool start = false;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!stopping && open < server.options_.maxConnections) {
        connection->counted = start = true;
        ++open;
        connections[connection.get()] = connection;
        int &fromClient = perClient[connection->client];
        connection->admitted =
            fromClient < server.options_.maxConnectionsPerClient;
        if (connection->admitted)
          ++fromClient;
        else if (fromClient == 0)
          perClient.erase(connection->client);
      }
    }
    if (start)
      connection->start(); // else its destructor closes the socket
  }
  accept();
}

const char *modelKindName(ModelKind kind) {
  switch (kind) {
  case ModelKind::Chat:
    return "chat";
  case ModelKind::Embedding:
    return "embedding";
  case ModelKind::Reranker:
    return "reranker";
  }
  return "chat";
}

std::optional<ModelKind> parseModelKind(std::string_view name) {
  for (ModelKind kind :
       {ModelKind::Chat, ModelKind::Embedding, ModelKind::Reranker})
    if (name == modelKindName(kind))
      return kind;
  return std::nullopt;
}

HttpServer::HttpServer(std::vector<ServedEndpoint> models,
                       ServerOptions options)
    : options_(std::move(options)) {
  for (ServedEndpoint &model : models) {
    auto endpoint = std::make_unique<Endpoint>();
    endpoint->limits.maxSeq = model.model.maxSeq;
    endpoint->limits.modelNames = {model.model.name};
    endpoint->served = std::move(model);
    endpoints_.push_back(std::move(endpoint));
  }
}

HttpServer::HttpServer(Generator &generator, ServedModel model,
                       ServerOptions options, BatchGenerator *batch)
    : HttpServer({ServedEndpoint{std::move(model), ModelKind::Chat, &generator,
                                 batch}},
                 std::move(options)) {}

HttpServer::~HttpServer() { stop(); }

json HttpServer::modelObject(const Endpoint &endpoint) const {
  const ServedModel &model = endpoint.served.model;
  return {{"id", model.name},
          {"object", "model"},
          {"created", 0},
          {"owned_by", "treni"},
          {"kind", modelKindName(endpoint.served.kind)},
          {"max_model_len", model.maxSeq}};
}

HttpServer::Endpoint *HttpServer::findEndpoint(std::string_view name) const {
  for (const auto &endpoint : endpoints_)
    if (endpoint->served.model.name == name)
      return endpoint.get();
  return nullptr;
}

HttpServer::Endpoint *HttpServer::streamedEndpoint() const {
  for (const auto &endpoint : endpoints_)
    if (endpoint->served.kind == ModelKind::Chat)
      return endpoint.get();
  return endpoints_.front().get();
}

ApiError HttpServer::modelNotFound(std::string_view name) const {
  std::vector<std::string> names;
  for (const auto &endpoint : endpoints_)
    names.push_back(endpoint->served.model.name);
  ApiError error =
      invalidRequest(absl::StrCat("the model ", quote(name),
                                  " does not exist; this server serves '",
                                  absl::StrJoin(names, "', '"), "'"),
                     "model", "model_not_found");
  error.status = 404;
  return error;
}

void HttpServer::addStreamedRoute(std::string path, StreamedWork work,
                                  bool concurrent) {
  streamedRoutes_.push_back({std::move(path), std::move(work), concurrent});
}

void HttpServer::addJsonRoute(std::string path, std::string model,
                              JsonWork work) {
  Endpoint *endpoint = findEndpoint(model);
  if (!endpoint) // a programming error: the caller names its own models
    throw std::invalid_argument(
        absl::StrCat("addJsonRoute: no served model '", model, "'"));
  jsonRoutes_.push_back({std::move(path), endpoint, std::move(work)});
}

absl::Status HttpServer::start() {
  std::lock_guard<std::mutex> stopLock(stopMutex_);
  if (started_)
    return absl::FailedPreconditionError("the server is already started");
  // A client that disconnects must not kill the process on the next write.
  std::signal(SIGPIPE, SIG_IGN);
  mallopt(M_ARENA_MAX, kMallocArenas);
  impl_ = std::make_unique<Impl>(*this);
  tcp::acceptor &acceptor = impl_->acceptor;
  beast::error_code ec;
  tcp::resolver resolver(impl_->io);
  auto endpoints = resolver.resolve(
      options_.host, std::to_string(options_.port), tcp::resolver::passive, ec);
  std::optional<tcp::endpoint> bound;
  for (const auto &entry : endpoints) {
    beast::error_code bindError;
    acceptor.open(entry.endpoint().protocol(), bindError);
    if (!bindError)
      acceptor.set_option(net::socket_base::reuse_address(true), bindError);
    if (!bindError)
      acceptor.bind(entry.endpoint(), bindError);
    if (!bindError)
      acceptor.listen(options_.listenBacklog, bindError);
    if (!bindError) {
      bound = acceptor.local_endpoint();
      break;
    }
    ec = bindError;
    beast::error_code ignored;
    acceptor.close(ignored);
  }
  if (!bound) {
    impl_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.host, ":", options_.port,
                     ": ", ec.message(), " (in use, or not a local address?)"));
  }
  port_ = bound->port();
  std::string boundAddress = bound->address().to_string();
  impl_->access = AccessPolicy(options_.host, boundAddress,
                               options_.allowedHosts, options_.apiKey);
  if (!isLoopbackAddress(boundAddress) && options_.apiKey.empty())
    std::fprintf(
        stderr,
        "treni serve: warning: listening on %s, which is not a loopback "
        "address, without --api-key: whoever reaches port %d can use "
        "the model\n",
        options_.host.c_str(), port_);
  for (auto &endpoint : endpoints_) {
    Endpoint &e = *endpoint;
    e.worker = std::thread([this, &e] { workerLoop(e.queue); });
    if (e.served.batch)
      for (int i = 0; i < std::max(1, options_.maxNumSeqs); ++i)
        e.batchWorkers.emplace_back([this, &e] { workerLoop(e.batchQueue); });
  }
  impl_->accept();
  for (int i = 0; i < std::max(1, options_.ioThreads); ++i)
    impl_->ioThreads.emplace_back([this] {
      // An exception out of a handler (std::bad_alloc, say) ends that
      // connection, whose handlers are gone; the thread goes on serving.
      while (true) {
        try {
          impl_->io.run();
          return;
        } catch (const std::exception &error) {
          logInternalError("an I/O thread", error.what());
        } catch (...) {
          logInternalError("an I/O thread", "unknown exception");
        }
      }
    });
  started_ = true;
  return absl::OkStatus();
}

void HttpServer::stop() {
  std::lock_guard<std::mutex> stopLock(stopMutex_);
  if (!started_ || finished_)
    return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    draining_ = true;
  }
  Impl &impl = *impl_;
  impl.stopping = true;
  net::post(impl.acceptor.get_executor(), [&impl] {
    beast::error_code ignored;
    impl.acceptor.close(ignored);
    impl.acceptRetry.cancel();
  });
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard<std::mutex> lock(impl.mutex);
    for (auto &[raw, weak] : impl.connections)
      if (std::shared_ptr<Connection> connection = weak.lock())
        open.push_back(std::move(connection));
  }
  for (std::shared_ptr<Connection> &connection : open)
    net::post(connection->stream.get_executor(),
              [connection] { connection->onServerStop(); });
  open.clear();
  // The connections serving a request finish it (the worker still runs).
  {
    std::unique_lock<std::mutex> lock(impl.mutex);
    impl.allClosed.wait(lock, [&] { return impl.open == 0; });
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    workerExit_ = true;
    queueChanged_.notify_all();
  }
  for (auto &endpoint : endpoints_) {
    if (endpoint->worker.joinable())
      endpoint->worker.join();
    for (std::thread &thread : endpoint->batchWorkers)
      thread.join();
    endpoint->batchWorkers.clear();
  }
  impl.workGuard.reset();
  impl.io.stop();
  for (std::thread &thread : impl.ioThreads)
    thread.join();
  impl.requestPool.join();
  std::lock_guard<std::mutex> lock(mutex_);
  finished_ = true;
  stopped_.notify_all();
}

void HttpServer::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  stopped_.wait(lock, [&] { return finished_; });
}

} // namespace treni
