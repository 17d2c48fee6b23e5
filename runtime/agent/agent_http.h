//===- agent_http.h - POST /v1/agent/run on treni serve ---------*- C++ -*-===//
//
// Runs an `.agent` workflow sent to the server, in-process on the served
// model, streaming its trace as Server-Sent Events:
//
//   POST /v1/agent/run  {"source": "<.agent text>", "workflow": "name"?,
//                        "args": {...}?, "file": "name.agent"?}
//   -> data: {"event": "start", ...}
//      data: {"event": "step", ...}        (one per generate/tool step)
//      data: {"event": "retry", ...}
//      data: {"event": "end", "value": ..., ...}   or {"event": "error", ...}
//      data: [DONE]
//
// The events are the executor's trace events (agent_executor.h). The
// workflow runs on the server's generation worker, so its generate steps
// are serialized with the other requests; while it waits on a tool, no other
// request generates.
//
// The route runs tools for whoever may call the API, so `treni serve` mounts
// it only with --enable-agent-api. The body has passed the server's checks
// for every POST (Host, Origin, API key, application/json, size, depth).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/agent/agent_executor.h"

namespace treni {

class HttpServer;
class TextGenerator;
class ToolRegistry;
struct ServedModel;

/// Adds POST /v1/agent/run to `server` (before start()). `generator`,
/// `model`'s pointees and `tools` must outlive the server. With a
/// generator that takes concurrent callers (a BatchGenerator) workflows run
/// beside each other and beside chat requests, their generate steps sharing
/// the batch; with a Generator they run one at a time on its worker.
void addAgentRoute(HttpServer &server, TextGenerator &generator,
                   const ServedModel &model, ToolRegistry &tools,
                   AgentExecutorOptions options = {});

} // namespace treni
