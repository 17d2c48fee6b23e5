//===- embeddings_route.h - /v1/embeddings and /v1/rerank ------*- C++ -*-===//
//
// The OpenAI embeddings endpoint over an Embedder: the request is parsed
// (openai_api.h), string inputs are tokenized as the model's tokenizer does
// (its post-processor's special tokens included, as sentence-transformers
// does), every input is checked against the vocabulary and the context, and
// the Embedder computes all of them in shared steps. No HTTP here: the server
// calls the work on its worker (HttpServer::addJsonRoute). POST /v1/rerank
// is the same over a Reranker: each document scored against the query,
// results best first.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <string>

#include "runtime/serve/embedder.h"
#include "runtime/serve/http_server.h"
#include "runtime/serve/reranker.h"
#include "runtime/text/tokenizer.h"

namespace treni {

/// The work of POST /v1/embeddings for the embedding model
/// `limits.modelNames` names (the server routes only its requests here).
/// Everything given must outlive the work.
HttpServer::JsonWork embeddingsWork(Embedder &embedder,
                                    const Tokenizer &tokenizer,
                                    ApiLimits limits, int64_t vocabSize);

/// The work of POST /v1/rerank for the reranker `limits.modelNames` names.
HttpServer::JsonWork rerankWork(Reranker &reranker, ApiLimits limits);

} // namespace treni
