//===- progress.cpp - progress of long steps on a terminal or a log ------===//

#include "runtime/serve/progress.h"

#include <unistd.h>

#include "absl/strings/str_format.h"
#include "support/clock.h"

namespace treni {

Progress::Progress(std::string title, int totalSteps, std::FILE *out)
    : Progress(std::move(title), totalSteps, out, isatty(fileno(out)) != 0) {}

Progress::Progress(std::string title, int totalSteps, std::FILE *out,
                   bool interactive)
    : title_(std::move(title)), totalSteps_(std::max(totalSteps, 1)), out_(out),
      interactive_(interactive), start_(std::chrono::steady_clock::now()),
      stepStart_(start_) {
  if (interactive_)
    ticker_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(mutex_);
      while (!finished_) {
        wake_.wait_for(lock, std::chrono::milliseconds(100));
        if (!finished_ && current_ > 0) {
          std::string text = lineLocked();
          std::fprintf(out_, "\r\033[K%s", text.c_str());
          std::fflush(out_);
        }
      }
    });
}

Progress::~Progress() { finish(); }

std::string Progress::line() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lineLocked();
}

std::string Progress::lineLocked() const {
  constexpr int kWidth = 24;
  // The running step counts as half done.
  double fraction = (current_ - 0.5) / totalSteps_;
  int filled = std::clamp(int(fraction * kWidth + 0.5), 0, kWidth);
  return absl::StrFormat("%s [%s%s] %d/%d %s %.1fs", title_,
                         std::string(filled, '#'),
                         std::string(kWidth - filled, ' '), current_,
                         totalSteps_, stepName_, secondsSince(stepStart_));
}

void Progress::step(const std::string &name) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_)
    return;
  ++current_;
  stepName_ = name;
  stepStart_ = std::chrono::steady_clock::now();
  if (interactive_) {
    std::string text = lineLocked();
    std::fprintf(out_, "\r\033[K%s", text.c_str());
  } else {
    std::fprintf(out_, "%s: %s (%d/%d)\n", title_.c_str(), name.c_str(),
                 current_, totalSteps_);
  }
  std::fflush(out_);
}

void Progress::finish(const std::string &summary) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finished_)
      return;
    finished_ = true;
    if (interactive_)
      std::fprintf(out_, "\r\033[K");
    std::fprintf(out_, "%s: done in %.2f s%s%s\n", title_.c_str(),
                 secondsSince(start_), summary.empty() ? "" : " - ",
                 summary.c_str());
    std::fflush(out_);
  }
  wake_.notify_all();
  if (ticker_.joinable())
    ticker_.join();
}

} // namespace treni
