#include "cli/suggest.h"

#include <algorithm>
#include <climits>

namespace hearth::cli {

int EditDistance(std::string_view a, std::string_view b) {
  // Optimal string alignment: Levenshtein plus the swap of two neighbours ("memroy").
  std::vector<std::vector<int>> d(a.size() + 1, std::vector<int>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::optional<std::string> Nearest(std::string_view typed,
                                   const std::vector<std::string>& candidates) {
  if (typed.empty()) return std::nullopt;
  const std::string* best = nullptr;
  int best_distance = INT_MAX;
  const std::string* prefix_of = nullptr;
  int prefixes = 0;
  for (const std::string& c : candidates) {
    int d = EditDistance(typed, c);
    if (d < best_distance) {
      best_distance = d;
      best = &c;
    }
    if (c.size() > typed.size() && c.starts_with(typed)) {
      prefix_of = &c;
      ++prefixes;
    }
  }
  int limit = typed.size() <= 4 ? 1 : 2;
  if (best && best_distance <= limit && best_distance < static_cast<int>(typed.size())) {
    return *best;
  }
  if (prefixes == 1) return *prefix_of;
  return std::nullopt;
}

}  // namespace hearth::cli
