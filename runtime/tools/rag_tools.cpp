//===- rag_tools.cpp - rag.ingest and rag.search --------------------------===//

#include "runtime/tools/rag_tools.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "runtime/tools/rag_store.h"
#include "support/json.h"
#include "support/json_bounded.h"
#include "support/utf8.h"

namespace treni {

namespace {

using json = nlohmann::json;

ToolSignature ragIngestSignature() {
  return {"rag.ingest",
          "Adds texts to a retrieval collection (created on first use): "
          "each text is split into chunks, embedded and stored with its "
          "metadata, for rag.search.",
          {{"collection",
            ToolType::String,
            true,
            "the collection's name: 1 to 64 of A-Z a-z 0-9 _ . -",
            {}},
           {"texts",
            ToolType::Json,
            true,
            "an array of strings (at most 1024, each at most 1 MiB)",
            {}},
           {"metadata",
            ToolType::Json,
            false,
            "an object for every text, or an array of one object per text",
            {}}},
          ToolType::Json,
          "{collection, documents, chunks, first_document, ids: [chunk id]}"};
}

ToolSignature ragSearchSignature() {
  return {"rag.search",
          "Finds the chunks of a retrieval collection nearest a query, best "
          "first; rerank reorders the top candidates with the reranker "
          "model.",
          {{"collection", ToolType::String, true, "the collection's name", {}},
           {"query", ToolType::String, true, "what to look for", {}},
           {"k", ToolType::Int, false, "how many chunks to return (1 to 100)",
            json(5)},
           {"rerank", ToolType::Bool, false,
            "rerank the top candidates with the reranker model", json(false)}},
          ToolType::Json,
          "{collection, method, searched, results: [{id, document, chunk, "
          "text, metadata, score, rerank_score?}]}",
          /*readOnly=*/true};
}

/// A status with the tool's name in front of its message, same code.
absl::Status prefixed(std::string_view tool, const absl::Status &status) {
  return absl::Status(status.code(),
                      absl::StrCat(toAbsl(tool), ": ", status.message()));
}

absl::Status stopped(const ToolContext &context, std::string_view what) {
  if (context.cancel && context.cancel->cancelled())
    return absl::CancelledError(absl::StrCat(toAbsl(what), ": cancelled"));
  return absl::DeadlineExceededError(
      absl::StrCat(toAbsl(what), ": stopped at the deadline"));
}

/// The tools' shared state: the store, the models and the limits.
class RagTools {
public:
  RagTools(std::shared_ptr<RagStore> store, RagToolConfig config,
           RagModels models)
      : store_(std::move(store)), config_(std::move(config)),
        models_(std::move(models)) {}

  absl::StatusOr<json> ingest(const json &args, const ToolContext &context);
  absl::StatusOr<json> search(const json &args, const ToolContext &context);

private:
  /// Embeds `texts` in batches, checking every vector; `dimension` is the
  /// expected one (0: any, set from the first vector).
  absl::StatusOr<std::vector<std::vector<float>>>
  embed(const std::vector<std::string> &texts, bool isQuery, int64_t &dimension,
        std::string_view tool, const ToolContext &context);
  /// InvalidArgument when the collection was made with another model.
  absl::Status checkModel(const RagCollectionInfo &info,
                          std::string_view tool) const;

  std::shared_ptr<RagStore> store_;
  RagToolConfig config_;
  RagModels models_;
};

absl::StatusOr<std::vector<std::vector<float>>>
RagTools::embed(const std::vector<std::string> &texts, bool isQuery,
                int64_t &dimension, std::string_view tool,
                const ToolContext &context) {
  std::vector<std::vector<float>> vectors;
  vectors.reserve(texts.size());
  size_t batch = size_t(config_.embedBatch);
  for (size_t first = 0; first < texts.size(); first += batch) {
    if (context.shouldStop())
      return stopped(context, absl::StrCat(toAbsl(tool), ": embedding"));
    size_t count = std::min(batch, texts.size() - first);
    absl::StatusOr<std::vector<std::vector<float>>> embedded = models_.embed(
        absl::MakeConstSpan(texts).subspan(first, count), isQuery, context);
    if (!embedded.ok())
      return absl::Status(embedded.status().code(),
                          absl::StrCat(toAbsl(tool), ": embedding with '",
                                       models_.embeddingModel,
                                       "': ", embedded.status().message()));
    if (embedded->size() != count)
      return absl::InternalError(absl::StrCat(
          toAbsl(tool), ": the embedding model '", models_.embeddingModel,
          "' returned ", embedded->size(), " vectors for ", count, " texts"));
    for (std::vector<float> &vector : *embedded) {
      int64_t size = int64_t(vector.size());
      if (dimension == 0)
        dimension = size;
      if (size != dimension || size < 1 || size > kRagMaxDimension)
        return absl::InternalError(absl::StrCat(
            toAbsl(tool), ": the embedding model '", models_.embeddingModel,
            "' returned a ", size, "-dimensional vector; expected ", dimension,
            " (1 to ", kRagMaxDimension, ")"));
      double sum = 0;
      for (float value : vector)
        sum += double(value) * value;
      if (!std::isfinite(sum) || !(sum > 0))
        return absl::InternalError(absl::StrCat(
            toAbsl(tool), ": the embedding model '", models_.embeddingModel,
            "' returned a vector that is zero or not finite"));
      vectors.push_back(std::move(vector));
    }
  }
  return vectors;
}

absl::Status RagTools::checkModel(const RagCollectionInfo &info,
                                  std::string_view tool) const {
  if (info.model == models_.embeddingModel)
    return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      toAbsl(tool), ": collection '", info.name, "' was embedded with model '",
      info.model, "'; the loaded embedding model is '", models_.embeddingModel,
      "' (a collection keeps the embedding model of its first ingest)"));
}

absl::StatusOr<json> RagTools::ingest(const json &args,
                                      const ToolContext &context) {
  constexpr std::string_view kTool = "rag.ingest";
  std::string collection = args["collection"].get<std::string>();
  if (absl::Status s = validateRagCollectionName(collection); !s.ok())
    return prefixed(kTool, s);

  const json &texts = args["texts"];
  if (!texts.is_array() || texts.empty())
    return absl::InvalidArgumentError(
        "rag.ingest: texts must be a non-empty array of strings");
  if (texts.size() > kRagMaxTexts)
    return absl::InvalidArgumentError(
        absl::StrCat("rag.ingest: ", texts.size(), " texts; at most ",
                     kRagMaxTexts, " in one call"));
  size_t total = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    if (!texts[i].is_string())
      return absl::InvalidArgumentError(absl::StrCat("rag.ingest: texts[", i,
                                                     "] must be a string, got ",
                                                     texts[i].type_name()));
    const std::string &text = texts[i].get_ref<const std::string &>();
    if (text.size() > kRagMaxTextBytes)
      return absl::InvalidArgumentError(
          absl::StrCat("rag.ingest: texts[", i, "] is ", text.size(),
                       " bytes; at most ", kRagMaxTextBytes));
    if (!utf8::isValid(text))
      return absl::InvalidArgumentError(
          absl::StrCat("rag.ingest: texts[", i, "] is not valid UTF-8"));
    total += text.size();
  }

  // Each text's metadata, as JSON text.
  std::vector<std::string> metadata(texts.size(), "{}");
  const json empty;
  const json &given = args.contains("metadata") ? args["metadata"] : empty;
  auto metadataText = [&](const json &value,
                          std::string where) -> absl::StatusOr<std::string> {
    if (!value.is_object())
      return absl::InvalidArgumentError(absl::StrCat("rag.ingest: ", where,
                                                     " must be an object, got ",
                                                     value.type_name()));
    std::string text = dumpJson(value);
    if (text.size() > kRagMaxMetadataBytes)
      return absl::InvalidArgumentError(
          absl::StrCat("rag.ingest: ", where, " is ", text.size(),
                       " bytes of JSON; at most ", kRagMaxMetadataBytes));
    return text;
  };
  if (given.is_array()) {
    if (given.size() != texts.size())
      return absl::InvalidArgumentError(absl::StrCat(
          "rag.ingest: metadata has ", given.size(), " entries for ",
          texts.size(), " texts (give one object per text, or one for all)"));
    for (size_t i = 0; i < given.size(); ++i) {
      absl::StatusOr<std::string> text =
          metadataText(given[i], absl::StrCat("metadata[", i, "]"));
      if (!text.ok())
        return text.status();
      total += text->size();
      metadata[i] = std::move(*text);
    }
  } else if (!given.is_null()) {
    absl::StatusOr<std::string> text = metadataText(given, "metadata");
    if (!text.ok())
      return text.status();
    total += text->size();
    std::fill(metadata.begin(), metadata.end(), *text);
  }
  if (total > kRagMaxCallBytes)
    return absl::InvalidArgumentError(
        absl::StrCat("rag.ingest: the texts and metadata are ", total,
                     " bytes; at most ", kRagMaxCallBytes, " in one call"));

  // Refuse another model before embedding anything.
  absl::StatusOr<std::optional<RagCollectionInfo>> info =
      store_->collection(collection, context);
  if (!info.ok())
    return prefixed(kTool, info.status());
  int64_t dimension = 0;
  if (*info) {
    if (absl::Status s = checkModel(**info, kTool); !s.ok())
      return s;
    dimension = (*info)->dimension;
  }

  std::vector<size_t> chunkCounts(texts.size());
  std::vector<std::string> pieces;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<std::string_view> split =
        chunkText(texts[i].get_ref<const std::string &>(), config_.chunkChars,
                  config_.overlapChars);
    chunkCounts[i] = split.size();
    pieces.insert(pieces.end(), split.begin(), split.end());
  }
  absl::StatusOr<std::vector<std::vector<float>>> vectors =
      embed(pieces, /*isQuery=*/false, dimension, kTool, context);
  if (!vectors.ok())
    return vectors.status();
  std::vector<RagDocument> documents(texts.size());
  size_t next = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    documents[i].metadata = std::move(metadata[i]);
    for (size_t c = 0; c < chunkCounts[i]; ++c, ++next)
      documents[i].chunks.push_back(
          {std::move(pieces[next]), std::move((*vectors)[next])});
  }

  absl::StatusOr<RagAddResult> added = store_->add(
      collection, models_.embeddingModel, std::move(documents), context);
  if (!added.ok())
    return prefixed(kTool, added.status());
  return json{{"collection", collection},
              {"documents", texts.size()},
              {"chunks", added->ids.size()},
              {"first_document", added->firstDocument},
              {"ids", added->ids}};
}

absl::StatusOr<json> RagTools::search(const json &args,
                                      const ToolContext &context) {
  constexpr std::string_view kTool = "rag.search";
  std::string collection = args["collection"].get<std::string>();
  if (absl::Status s = validateRagCollectionName(collection); !s.ok())
    return prefixed(kTool, s);
  std::string query = args["query"].get<std::string>();
  if (query.size() > kRagMaxTextBytes)
    return absl::InvalidArgumentError(
        absl::StrCat("rag.search: the query is ", query.size(),
                     " bytes; at most ", kRagMaxTextBytes));
  if (!utf8::isValid(query))
    return absl::InvalidArgumentError(
        "rag.search: the query is not valid UTF-8");
  if (chunkText(query, 4, 0).empty())
    return absl::InvalidArgumentError("rag.search: the query is empty");
  int64_t k = args["k"].get<int64_t>();
  if (k < 1 || k > kRagMaxK)
    return absl::InvalidArgumentError(
        absl::StrCat("rag.search: k must be 1 to ", kRagMaxK, ", got ", k));
  bool rerank = args["rerank"].get<bool>();
  if (rerank && !models_.rerank)
    return absl::InvalidArgumentError(
        "rag.search: rerank is true but no reranker model is loaded (load "
        "one, or search without rerank)");

  absl::StatusOr<std::optional<RagCollectionInfo>> info =
      store_->collection(collection, context);
  if (!info.ok())
    return prefixed(kTool, info.status());
  if (!*info)
    return absl::NotFoundError(absl::StrCat("rag.search: no collection named '",
                                            collection,
                                            "' (rag.ingest creates it)"));
  if (absl::Status s = checkModel(**info, kTool); !s.ok())
    return s;

  int64_t dimension = (*info)->dimension;
  absl::StatusOr<std::vector<std::vector<float>>> vectors =
      embed({query}, /*isQuery=*/true, dimension, kTool, context);
  if (!vectors.ok())
    return vectors.status();
  int64_t candidates = rerank ? std::max(k, config_.rerankCandidates) : k;
  absl::StatusOr<RagSearchResult> found =
      store_->search(collection, vectors->front(), candidates, context);
  if (!found.ok())
    return prefixed(kTool, found.status());

  std::vector<RagHit> &hits = found->hits;
  std::vector<float> rerankScores;
  if (rerank && !hits.empty()) {
    if (context.shouldStop())
      return stopped(context, "rag.search: reranking");
    std::vector<std::string> documents;
    for (const RagHit &hit : hits)
      documents.push_back(hit.text);
    absl::StatusOr<std::vector<float>> scores =
        models_.rerank(query, documents, context);
    if (!scores.ok())
      return absl::Status(
          scores.status().code(),
          absl::StrCat("rag.search: reranking: ", scores.status().message()));
    if (scores->size() != hits.size())
      return absl::InternalError(
          absl::StrCat("rag.search: the reranker returned ", scores->size(),
                       " scores for ", hits.size(), " documents"));
    for (float score : *scores)
      if (!std::isfinite(score))
        return absl::InternalError(
            "rag.search: the reranker returned a score that is not finite");
    std::vector<size_t> order(hits.size());
    for (size_t i = 0; i < order.size(); ++i)
      order[i] = i;
    // Hits come best-first by score, so a stable sort breaks ties by it.
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return (*scores)[a] > (*scores)[b];
    });
    std::vector<RagHit> reordered;
    for (size_t i : order) {
      reordered.push_back(std::move(hits[i]));
      rerankScores.push_back((*scores)[i]);
    }
    hits = std::move(reordered);
  }
  if (int64_t(hits.size()) > k)
    hits.resize(size_t(k));

  json results = json::array();
  for (size_t i = 0; i < hits.size(); ++i) {
    const RagHit &hit = hits[i];
    absl::StatusOr<json> metadata = parseJsonBounded(hit.metadata);
    if (!metadata.ok())
      return absl::InternalError(
          absl::StrCat("rag.search: the stored metadata of chunk ", hit.id,
                       " is not JSON (the file is damaged)"));
    json result = {{"id", hit.id},
                   {"document", hit.document},
                   {"chunk", hit.chunk},
                   {"text", hit.text},
                   {"metadata", std::move(*metadata)},
                   {"score", hit.score}};
    if (rerank)
      result["rerank_score"] = rerankScores[i];
    results.push_back(std::move(result));
  }
  return json{{"collection", collection},
              {"method", found->method},
              {"searched", found->searched},
              {"results", std::move(results)}};
}

} // namespace

absl::Status registerRagTools(ToolRegistry &registry,
                              const RagToolConfig &config, RagModels models) {
  if (!models.embed)
    return absl::InvalidArgumentError(
        "rag tools: an embedding model is required (RagModels::embed)");
  if (models.embeddingModel.empty() ||
      models.embeddingModel.size() > kRagMaxModelName)
    return absl::InvalidArgumentError(
        absl::StrCat("rag tools: the embedding model's name must be 1 to ",
                     kRagMaxModelName, " bytes"));
  if (config.chunkChars < 16 || config.chunkChars > kRagMaxTextBytes)
    return absl::InvalidArgumentError(
        absl::StrCat("rag tools: chunkChars must be 16 to ", kRagMaxTextBytes,
                     ", got ", config.chunkChars));
  if (config.overlapChars * 2 >= config.chunkChars)
    return absl::InvalidArgumentError(absl::StrCat(
        "rag tools: overlapChars (", config.overlapChars,
        ") must be less than half of chunkChars (", config.chunkChars, ")"));
  if (config.exactLimit < 0)
    return absl::InvalidArgumentError("rag tools: exactLimit must be >= 0");
  if (config.rerankCandidates < 1 || config.rerankCandidates > kRagMaxK)
    return absl::InvalidArgumentError(
        absl::StrCat("rag tools: rerankCandidates must be 1 to ", kRagMaxK,
                     ", got ", config.rerankCandidates));
  if (config.embedBatch < 1 || config.embedBatch > int64_t(kRagMaxTexts))
    return absl::InvalidArgumentError(
        absl::StrCat("rag tools: embedBatch must be 1 to ", kRagMaxTexts,
                     ", got ", config.embedBatch));
  RagStoreOptions options;
  options.exactLimit = config.exactLimit;
  options.busyTimeout = config.busyTimeout;
  absl::StatusOr<std::shared_ptr<RagStore>> store =
      RagStore::open(config.path, options);
  if (!store.ok())
    return store.status();
  auto tools = std::make_shared<RagTools>(*store, config, std::move(models));
  if (absl::Status s =
          registry.add(ragIngestSignature(),
                       [tools](const json &args, const ToolContext &context) {
                         return tools->ingest(args, context);
                       });
      !s.ok())
    return s;
  return registry.add(ragSearchSignature(),
                      [tools](const json &args, const ToolContext &context) {
                        return tools->search(args, context);
                      });
}

std::vector<ToolSignature> ragToolSignatures() {
  return {ragIngestSignature(), ragSearchSignature()};
}

} // namespace treni
