//===- rag_models.h - served models as rag.* tools' models -----*- C++ -*-===//
//
// rag.ingest and rag.search (runtime/tools/rag_tools.h) take their models as
// functions. These are the ones over the process's own models: an Embedder
// (texts tokenized as /v1/embeddings does; a query first gets the
// configured instruction prefix, which Qwen3-Embedding asks for; an input
// longer than the model takes keeps its first tokens and its last, the
// post-processor's EOS that last-token pooling reads) and, optionally, a
// Reranker (Qwen3-Reranker's yes/no score). The tool's deadline bounds each
// call (the models check it between steps).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <string>

#include "runtime/serve/embedder.h"
#include "runtime/serve/reranker.h"
#include "runtime/text/tokenizer.h"
#include "runtime/tools/rag_tools.h"

namespace treni {

/// What a tools configuration's "rag" section asks of the served models.
struct RagModelRequest {
  std::string embeddingModel; ///< a served embedding model's name
  std::string reranker;       ///< a served reranker's name, or empty
  /// Put before every query (not before passages), e.g. Qwen3-Embedding's
  /// "Instruct: ...\nQuery: ".
  std::string queryPrefix;
};

/// RagModels over `embedder` (named `embeddingModel`, tokenizing with
/// `tokenizer`) and `reranker` (null: no reranking); all must outlive the
/// tools.
RagModels ragModels(const std::string &embeddingModel, Embedder &embedder,
                    const Tokenizer &tokenizer, Reranker *reranker,
                    std::string queryPrefix);

} // namespace treni
