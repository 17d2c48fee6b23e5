//===- progress.h - progress of long steps --------------------*- C++ -*-===//
//
// Loading a model (and compiling it on first load) takes seconds. On a
// terminal, Progress draws one line that it redraws in place: a bar over the
// steps, the current step and its elapsed time, refreshed ten times a second
// while a step runs. Anywhere else (a log, a pipe, CI) it writes plain
// lines: one when a step starts and one when everything is done.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

namespace treni {

class Progress {
public:
  /// `totalSteps` steps will be announced with step(); `interactive`
  /// defaults to whether `out` is a terminal.
  Progress(std::string title, int totalSteps, std::FILE *out = stderr);
  Progress(std::string title, int totalSteps, std::FILE *out, bool interactive);
  ~Progress();

  /// Starts the next step (the previous one is done).
  void step(const std::string &name);
  /// All steps done: the final line with the total time.
  void finish(const std::string &summary = "");

  bool interactive() const { return interactive_; }
  /// The bar line as drawn now (for tests).
  std::string line() const;

private:
  void redraw();
  std::string lineLocked() const;

  std::string title_;
  int totalSteps_;
  std::FILE *out_;
  bool interactive_;
  int current_ = 0;
  std::string stepName_;
  std::chrono::steady_clock::time_point start_, stepStart_;
  bool finished_ = false;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::thread ticker_;
};

} // namespace treni
