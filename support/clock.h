//===- clock.h - elapsed time on the steady clock ---------------*- C++ -*-===//
#pragma once

#include <chrono>

namespace treni {

/// Seconds elapsed on the steady clock since `start`.
inline double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

/// Milliseconds elapsed on the steady clock since `start`.
inline double millisecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - start)
      .count();
}

} // namespace treni
