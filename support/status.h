//===- Status.h - absl::Status propagation helpers --------------*- C++ -*-===//
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TRENI_STATUS_CONCAT_INNER(a, b) a##b
#define TRENI_STATUS_CONCAT(a, b) TRENI_STATUS_CONCAT_INNER(a, b)

/// Returns the status from the enclosing function when it is an error.
#define TRENI_RETURN_IF_ERROR(expr)                                            \
  do {                                                                         \
    if (::absl::Status _treni_status = (expr); !_treni_status.ok())            \
      return _treni_status;                                                    \
  } while (0)

/// `TRENI_ASSIGN_OR_RETURN(auto x, f());` unwraps a StatusOr or returns its
/// error.
#define TRENI_ASSIGN_OR_RETURN(lhs, expr)                                      \
  TRENI_ASSIGN_OR_RETURN_IMPL(TRENI_STATUS_CONCAT(_treni_or_, __LINE__), lhs,  \
                              expr)
#define TRENI_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)                            \
  auto tmp = (expr);                                                           \
  if (!tmp.ok())                                                               \
    return tmp.status();                                                       \
  lhs = std::move(*tmp)
