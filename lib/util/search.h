// The one search the accuracy-aware fallbacks share (quantize's layers kept in float, convert
// --auto-mixed's nodes kept in float32): with candidates ranked most sensitive first, the fewest top
// candidates whose exclusion meets the target, by bisection.
#pragma once
#include <cstddef>

namespace mopt::util {

// The smallest k in [lo, hi] with meets(k), assuming meets is monotone (keeping more candidates never
// hurts); hi when none below hi meets it (meets(hi) itself is not called: the caller knows or measures it).
// Calls meets about log2(hi - lo) times.
template <typename Meets>
size_t smallest_meeting(size_t lo, size_t hi, Meets&& meets) {
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (meets(mid)) hi = mid;
    else lo = mid + 1;
  }
  return hi;
}

}  // namespace mopt::util
